"""The calibration report: JSON and Markdown summaries, dropped rows, PNG convergence and scatter plots.

Layout of the report directory::

    report.json         config, search space, drive-test summary, per-site results and
                        every evaluation (parameter values, ρ, seconds)
    report.md           the same for people: a table of ρ before/after per site
    dropped_rows.csv    every dropped drive-test row with its reason
    convergence_<bs_id>.png   ρ per evaluation and the best so far
    scatter_<bs_id>.png       simulated against measured, before and after

The directory is written atomically (:func:`twin.io.atomic_dir`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from twin.config import to_dict

__all__ = ["write_report", "report_dict", "report_markdown", "plot_convergence", "plot_scatter"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)) or "site"


def report_dict(result: Any) -> dict[str, Any]:
    """Everything of a :class:`calibrate.fit.CalibrationResult` that fits in JSON."""
    sites = []
    for s in result.sites:
        d = s.summary()
        d["evaluation_log"] = [{"values": {k: round(v, 3) for k, v in e.values.items()},
                                "rho": round(e.rho, 4), "seconds": round(e.seconds, 3)} for e in s.evaluations]
        sites.append(d)
    return {"kind": "calibration-report", "schema_version": 1, "summary": result.summary(),
            "config": to_dict(result.config),
            "space": {p: {"bounds": list(b), "unit": result.space.units()[p],
                          "circular": k in result.space.circular}
                      for k, (p, b) in enumerate(zip(result.space.params, result.space.bounds, strict=True))},
            "drive_test": result.drive_test.summary(), "sites": sites}


def _fmt(v: Any, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def report_markdown(result: Any) -> str:
    """The report as Markdown."""
    s = result.summary()
    dt = result.drive_test.summary()
    lines = ["# Calibration report", "",
             f"Metric **{result.config.metric}**, parameters {', '.join(result.space.params)}, "
             f"{result.config.calls} evaluations per site, {result.config.samples_per_tx:,} rays per "
             f"evaluation on {result.config.cell_size_m or 'scene'} m cells; {s['workers']} worker(s), "
             f"{s['wall_s']:.1f} s in all.", "",
             f"Sites: {s['fitted']} fitted, {s['skipped']} skipped. Mean Spearman ρ "
             f"{_fmt(s['mean_rho_before'])} → {_fmt(s['mean_rho_after'])} (gain {_fmt(s['mean_rho_gain'])}).", "",
             "| site | cells | points | ρ before | ρ after | gain | fitted parameters | evaluations | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    units = result.space.units()
    for site in result.sites:
        if site.status != "fitted":
            lines.append(f"| {site.bs_id} | {', '.join(map(str, site.cell_ids))} | – | – | – | – | "
                         f"skipped: {site.reason} | 0 | – |")
            continue
        params = ", ".join(f"{k} {site.before[k]:.1f}→{v:.1f} {units[k]}" for k, v in site.after.items())
        lines.append(f"| {site.bs_id} | {', '.join(map(str, site.cell_ids))} | {site.n_points} | "
                     f"{_fmt(site.rho_before)} | {_fmt(site.rho_after)} | {_fmt(site.rho_after - site.rho_before)} | "
                     f"{params} | {len(site.evaluations)} | {site.wall_s:.1f} |")
    skipped_cells = [(site.bs_id, c, r) for site in result.sites for c, r in site.skipped_cells.items()]
    if skipped_cells:
        lines += ["", "## Skipped cells", ""] + [f"- site {b}, cell {c}: {r}" for b, c, r in skipped_cells]
    lines += ["", "## Drive test", "",
              f"{dt['source']}: {dt['rows_read']} rows read, {dt['rows_kept']} kept, {dt['rows_dropped']} dropped."]
    lines += [f"- {reason}: {n}" for reason, n in dt["dropped_by_reason"].items()]
    lines += [f"- note: {n}" for n in dt["notes"]]
    lines += ["", "Per site: `convergence_<bs_id>.png` (ρ per evaluation), `scatter_<bs_id>.png` "
              "(simulated against measured, before and after). Every dropped row: `dropped_rows.csv`.", ""]
    return "\n".join(lines)


def plot_convergence(site: Any, path: str | os.PathLike) -> None:
    """ρ of every evaluation and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from twin.plot import save_figure

    rho = np.array([e.rho for e in site.evaluations])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, len(rho) + 1), rho, ".", color="0.5", label="evaluation")
    ax.plot(np.arange(1, len(rho) + 1), np.maximum.accumulate(rho), "-", color="C0", label="best so far")
    ax.axhline(site.rho_before, color="C3", ls="--", lw=1, label=f"file pose ρ={site.rho_before:.3f}")
    ax.set_xlabel("evaluation")
    ax.set_ylabel("Spearman ρ")
    ax.set_title(f"site {site.bs_id}: ρ {site.rho_before:.3f} → {site.rho_after:.3f}")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_scatter(site: Any, path: str | os.PathLike, metric: str) -> None:
    """Simulated against measured values at the drive-test points, before and after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from twin.plot import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharex=True, sharey=True)
    for ax, which, rho in ((axes[0], 1, site.rho_before), (axes[1], 2, site.rho_after)):
        for k, (cid, arrays) in enumerate(site.scatter.items()):
            meas, sim = arrays[0], arrays[which]
            ok = np.isfinite(sim)
            ax.scatter(meas[ok], sim[ok], s=6, alpha=0.5, color=f"C{k % 10}", label=f"cell {cid}")
        ax.set_title(f"{'file pose' if which == 1 else 'calibrated'}: ρ = {rho:.3f}")
        ax.set_xlabel(f"measured {metric} [dBm]")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"simulated {metric} [dBm]")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"site {site.bs_id}")
    save_figure(fig, path)


def write_report(result: Any, report_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the report directory of a calibration (atomically); returns its path."""
    from twin.io import atomic_dir

    with atomic_dir(report_dir, overwrite=overwrite) as tmp:
        (tmp / "report.json").write_text(json.dumps(report_dict(result), indent=1))
        (tmp / "report.md").write_text(report_markdown(result))
        result.drive_test.dropped.to_csv(tmp / "dropped_rows.csv", index=False)
        for site in result.sites:
            if site.status == "fitted" and site.evaluations:
                plot_convergence(site, tmp / f"convergence_{_safe(site.bs_id)}.png")
                plot_scatter(site, tmp / f"scatter_{_safe(site.bs_id)}.png", result.config.metric)
    return Path(report_dir)
