"""The calibration report: JSON and Markdown summaries, dropped rows, PNG convergence and scatter plots.

Layout of the report directory::

    report.json         config, search space, drive-test summary, per-site results and
                        every evaluation (parameter values, ρ, seconds)
    report.md           the same for people: a table of ρ before/after per site
    dropped_rows.csv    every dropped drive-test row with its reason
    convergence_<bs_id>.png   the objective and ρ per evaluation, the best so far
    scatter_<bs_id>.png       simulated against measured, before and after
    profile_<bs_id>.png       the objective along each parameter around the result
                              (how well the drive test pins it down)

The directory is written atomically (:func:`twin.io.atomic_dir`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from calibrate.space import PROFILE_STEP
from twin.config import to_dict

__all__ = ["write_report", "report_dict", "report_markdown", "plot_convergence", "plot_scatter",
           "plot_profile"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)) or "site"


def report_dict(result: Any) -> dict[str, Any]:
    """Everything of a :class:`calibrate.fit.CalibrationResult` that fits in JSON."""
    sites = []
    for s in result.sites:
        d = s.summary()
        d["evaluation_log"] = [{"values": {k: round(v, 3) for k, v in e.values.items()}, "stage": e.stage,
                                "loss": _round(e.loss), "rho": _round(e.rho), "rmse_db": _round(e.rmse_db),
                                "huber_db": _round(e.huber_db), "offset_db": _round(e.offset_db),
                                "prior_chi2": _round(e.prior_chi2), "samples_per_tx": e.samples_per_tx, "seconds": round(e.seconds, 3)}
                               for e in s.evaluations]
        sites.append(d)
    return {"kind": "calibration-report", "schema_version": 1, "summary": result.summary(),
            "config": to_dict(result.config),
            "space": {p: {"bounds": list(b), "unit": result.space.units()[p],
                          "circular": k in result.space.circular}
                      for k, (p, b) in enumerate(zip(result.space.params, result.space.bounds, strict=True))},
            "drive_test": result.drive_test.summary(), "sites": sites}


def _round(v: float, digits: int = 4) -> float | None:
    return round(float(v), digits) if np.isfinite(v) else None


def _fmt(v: Any, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def report_markdown(result: Any) -> str:
    """The report as Markdown."""
    s = result.summary()
    dt = result.drive_test.summary()
    lines = ["# Calibration report", "",
             f"Metric **{result.config.metric}**, objective **{result.config.objective}**, parameters {', '.join(result.space.params)}, "
             f"{result.config.calls} evaluations per site, {result.config.samples_per_tx:,} rays per "
             f"evaluation on {result.config.cell_size_m or 'scene'} m cells; {s['workers']} worker(s), "
             f"{s['wall_s']:.1f} s in all.", "",
             f"Sites: {s['fitted']} fitted, {s['skipped']} skipped. Mean Spearman ρ "
             f"{_fmt(s['mean_rho_before'])} → {_fmt(s['mean_rho_after'])} (gain {_fmt(s['mean_rho_gain'])}).", "",
             "| site | cells | points | ρ before | ρ after | gain | RMSE before → after [dB] | offset [dB] "
             "| fitted parameters | evaluations | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    units = result.space.units()
    for site in result.sites:
        if site.status != "fitted":
            lines.append(f"| {site.bs_id} | {', '.join(map(str, site.cell_ids))} | – | – | – | – | – | – | "
                         f"skipped: {site.reason} | 0 | – |")
            continue
        params = ", ".join(f"{k} {site.before[k]:.1f}→{v:.1f} {units[k]}" for k, v in site.after.items())
        lines.append(f"| {site.bs_id} | {', '.join(map(str, site.cell_ids))} | {site.n_points} | "
                     f"{_fmt(site.rho_before)} | {_fmt(site.rho_after)} | {_fmt(site.rho_after - site.rho_before)} | "
                     f"{_fmt(site.rmse_before_db, 2)} → {_fmt(site.rmse_after_db, 2)} | "
                     f"{_fmt(site.offset_after_db, 1)} | {params} | {len(site.evaluations)} | {site.wall_s:.1f} |")
    profiled = [site for site in result.sites if site.status == "fitted" and site.pinned]
    if profiled:
        lines += ["", "## How well each parameter is pinned down", "",
                  "The objective along each parameter around the result (`profile_<bs_id>.png`): the "
                  "half-width over which it stays within the flatness tolerance of the result's "
                  "value; *flat* means not identifiable from this drive test at the probed range.", "",
                  "| site | " + " | ".join(result.space.params) + " |",
                  "|---|" + "---|" * len(result.space.params)]
        for site in profiled:
            cells = []
            for p in result.space.params:
                info = site.pinned.get(p)
                cells.append("–" if info is None else "**flat**" if info["flat"] else
                             f"±{info['within']:g} {units[p]}" if info["within"] else f"< {_step(p)} {units[p]}")
            lines.append(f"| {site.bs_id} | " + " | ".join(cells) + " |")
    notes = [w for site in result.sites for w in site.warnings]
    if notes:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in notes]
    skipped_cells = [(site.bs_id, c, r) for site in result.sites for c, r in site.skipped_cells.items()]
    if skipped_cells:
        lines += ["", "## Skipped cells", ""] + [f"- site {b}, cell {c}: {r}" for b, c, r in skipped_cells]
    lines += ["", "## Drive test", "",
              f"{dt['source']}: {dt['rows_read']} rows read, {dt['rows_kept']} kept, {dt['rows_dropped']} dropped."]
    lines += [f"- {reason}: {n}" for reason, n in dt["dropped_by_reason"].items()]
    lines += [f"- note: {n}" for n in dt["notes"]]
    lines += ["", "Per site: `convergence_<bs_id>.png` (the objective and ρ per evaluation), `scatter_<bs_id>.png` "
              "(simulated against measured, before and after), `profile_<bs_id>.png` (the objective "
              "along each parameter). Every dropped row: `dropped_rows.csv`.", ""]
    return "\n".join(lines)


def _step(p: str) -> str:
    return f"{PROFILE_STEP[p]:g}"


def plot_convergence(site: Any, path: str | os.PathLike) -> None:
    """The objective and ρ of every evaluation, and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from twin.plot import save_figure

    evs = [e for e in site.evaluations if e.stage != "profile"]
    rho = np.array([e.rho for e in evs])
    loss = np.array([e.loss for e in evs])
    n = np.arange(1, len(rho) + 1)
    fig, (ax0, ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax0.plot(n, loss, ".", color="0.5", label="evaluation")
    ax0.plot(n, np.minimum.accumulate(loss), "-", color="C0", label="best so far")
    ax0.axhline(site.loss_before, color="C3", ls="--", lw=1, label=f"file pose {site.loss_before:.3f}")
    ax0.set_xlabel("evaluation")
    ax0.set_ylabel(f"{site.objective} objective (minimized)")
    ax0.legend(loc="upper right", fontsize=8)
    ax0.grid(alpha=0.3)
    ax.plot(n, rho, ".", color="0.5", label="evaluation")
    ax.axhline(site.rho_before, color="C3", ls="--", lw=1, label=f"file pose ρ={site.rho_before:.3f}")
    ax.axhline(site.rho_after, color="C0", ls="-", lw=1, label=f"result ρ={site.rho_after:.3f}")
    ax.set_xlabel("evaluation")
    ax.set_ylabel("Spearman ρ")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(f"site {site.bs_id}: ρ {site.rho_before:.3f} → {site.rho_after:.3f}")
    save_figure(fig, path)


def plot_profile(site: Any, path: str | os.PathLike, units: dict[str, str]) -> None:
    """The objective along each parameter around the result, one panel per parameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from twin.plot import save_figure

    names = list(site.profile)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), squeeze=False)
    for ax, p in zip(axes[0], names, strict=True):
        d, loss, _ = (np.array(v, np.float64) for v in zip(*site.profile[p], strict=True))
        ax.plot(d, loss, "o-", color="C0")
        ax.axvline(0.0, color="0.6", lw=1)
        flat = site.pinned.get(p, {}).get("flat", False)
        ax.set_title(f"{p}{' (flat)' if flat else ''}", color="C3" if flat else "black")
        ax.set_xlabel(f"{p} − result [{units[p]}]")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{site.objective} objective")
    fig.suptitle(f"site {site.bs_id}: objective profile around the result")
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

    with atomic_dir(report_dir, overwrite=overwrite, kind="report") as tmp:
        (tmp / "report.json").write_text(json.dumps(report_dict(result), indent=1))
        (tmp / "report.md").write_text(report_markdown(result))
        result.drive_test.dropped.to_csv(tmp / "dropped_rows.csv", index=False)
        for site in result.sites:
            if site.status == "fitted" and site.evaluations:
                plot_convergence(site, tmp / f"convergence_{_safe(site.bs_id)}.png")
                plot_scatter(site, tmp / f"scatter_{_safe(site.bs_id)}.png", result.config.metric)
            if site.status == "fitted" and site.profile:
                plot_profile(site, tmp / f"profile_{_safe(site.bs_id)}.png", result.space.units())
    return Path(report_dir)
