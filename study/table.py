"""Seed 004's Table 1, Fig. 4 and Fig. 9 from a study's results: Markdown, JSON and PNG.

:func:`write_table` writes ``table.json`` (everything: every row under every prior, the
compute of each row, the datasets' sizes, the fidelity gap per cell, the read-out),
``table.md`` (Table 1 under the truth-free default prior, then under the seeds'
truth-centred protocol, labelled so) and ``errors.png`` (RMSE on known vs unknown
streets per row, one panel per prior: seed 004 Fig. 4) and ``compute.png`` (RMSE on
unknown streets vs the row's compute: seed 004 Fig. 9).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["write_table", "readout", "table_markdown"]


def _rmse(row: dict[str, Any], part: str) -> float | None:
    p = row.get("parts", {}).get(part, {})
    return p.get("rmse_m") if p.get("n", 0) else None


def _num(v: Any, fmt: str = "{:.1f}") -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def _find(rows: list[dict[str, Any]], experiment: str, model: str, prior: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["experiment"] == experiment and r["model"] == model
                 and r["prior_asked"] == prior), None)


def readout(content: dict[str, Any], prior: str = "auto") -> dict[str, Any]:
    """The study's answers under ``prior``: calibration vs scale (B' vs C zero-shot and after
    fine-tuning), synthetic pretraining vs real-only on unknown streets, what domain-adversarial
    fine-tuning changes against the plain one (``dann``), the fidelity gap."""
    rows = content["rows"]
    out: dict[str, Any] = {"prior": prior}
    for model in sorted({r["model"] for r in rows if r["kind"] == "model"}):
        def u(exp: str, m: str = model) -> float | None:
            r = _find(rows, exp, m, prior)
            return _rmse(r, "unknown") if r else None

        a, bp, c, c_bp = u("A"), u("B' zero-shot"), u("C zero-shot"), u("C -> B' zero-shot")
        ft: dict[str, float] = {}
        for e in ("B' -> A", "C -> A", "C -> B' -> A"):
            v = u(e)
            if v is not None:
                ft[e] = v
        res: dict[str, Any] = {"A_unknown_rmse_m": a, "Bp_zero_shot_unknown_rmse_m": bp,
                               "C_zero_shot_unknown_rmse_m": c, "C_Bp_zero_shot_unknown_rmse_m": c_bp,
                               "finetuned_unknown_rmse_m": ft}
        if bp is not None and c is not None:
            res["calibration_beats_scale_zero_shot"] = bp < c
        if "B' -> A" in ft and "C -> A" in ft:
            res["calibration_beats_scale_finetuned"] = ft["B' -> A"] < ft["C -> A"]
        if a is not None and ft:
            best = min(ft, key=ft.__getitem__)
            res["best_pretrained"] = best
            res["pretraining_cut_m"] = round(a - ft[best], 1)
            res["pretraining_cut_frac"] = round((a - ft[best]) / a, 3) if a else None
        out[model] = res
    dann = []
    for r in (r for r in rows if r.get("dann") and r["prior_asked"] == prior):
        plain = _find(rows, r["dann"]["plain"], r["model"], prior)
        d = {part: _rmse(r, part) for part in ("known", "unknown")}
        p = {part: _rmse(plain, part) if plain else None for part in ("known", "unknown")}
        dann.append({"experiment": r["dann"]["plain"], "model": r["model"],
                     "domain_adversarial_lambda": r["dann"]["domain_adversarial_lambda"],
                     "plain_unknown_rmse_m": p["unknown"], "dann_unknown_rmse_m": d["unknown"],
                     "plain_known_rmse_m": p["known"], "dann_known_rmse_m": d["known"],
                     "dann_cut_unknown_m": (round(p["unknown"] - d["unknown"], 1)
                                            if p["unknown"] is not None and d["unknown"] is not None else None)})
    if dann:
        out["dann"] = dann
    gap = content.get("fidelity", {})
    for key in ("B", "B'"):
        cells = gap.get(key) or []
        if cells:
            out[f"fidelity_{key}_mean_abs_bias_db"] = round(sum(abs(c["mean_db"]) for c in cells) / len(cells), 2)
            out[f"fidelity_{key}_mean_rmse_db"] = round(sum(c["rmse_db"] for c in cells) / len(cells), 2)
    return out


def table_markdown(content: dict[str, Any]) -> str:
    """Table 1 as Markdown: one section per prior (the truth-free default first), then fidelity and read-out."""
    rows = content["rows"]
    priors = list(dict.fromkeys(r["prior_asked"] for r in rows))
    others = [m for m in dict.fromkeys(r["model"] for r in rows if r["kind"] == "model") if m != "posterior"]
    lines = [f"# Seed 004 Table 1: {content.get('plan', 'study')}", "",
             f"Dataset A: {content.get('a_source')}. Every figure is on A's spatial test part (known streets: test "
             "samples in blocks holding training samples; unknown streets: held-out blocks). Compute is the wall "
             "and CPU time of the row's own stages (its datasets, calibration, traces and trainings; the world "
             "and the drive test itself excluded), on this machine "
             f"(load average {', '.join(f'{v:.2f}' for v in content.get('load_average', []))}).", ""]
    for prior in priors:
        label = next((r.get("prior_label") for r in rows if r["prior_asked"] == prior and r["kind"] == "model"),
                     prior)
        truth = prior == "truth"
        lines += [f"## Under the prior `{prior}`" + (" — the seeds' truth-centred protocol (not deployable)"
                                                      if truth else " (truth-free)"), "", f"Prior: {label}.", "",
                  "| Experiment | Model | prior used | train seq. | train events | RMSE known [m] | "
                  "RMSE unknown [m] | NLL unknown | cov50 / cov90 unknown | wall [s] | CPU [s] |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in [r for r in rows if r["prior_asked"] == prior]:
            counts = r.get("training_data", {})
            seq = " + ".join(f"{v['train_sequences']}" for v in counts.values()) if counts else "–"
            ev = " + ".join(f"{v['train_events']}" for v in counts.values()) if counts else "–"
            unk = r.get("parts", {}).get("unknown", {})
            cov = (f"{unk['coverage50']:.2f} / {unk['coverage90']:.2f}" if "coverage50" in unk else "–")
            lines.append(f"| {r['experiment'] if r['kind'] == 'model' else 'baseline'} | {r['model']} | {r['prior']} "
                         f"| {seq} | {ev} | {_num(_rmse(r, 'known'))} | {_num(_rmse(r, 'unknown'))} "
                         f"| {_num(unk.get('nll'), '{:.2f}')} | {cov} | {_num(r['compute']['wall_s'], '{:.0f}')} "
                         f"| {_num(r['compute']['cpu_s'], '{:.0f}')} |")
            if r.get("dann"):  # the models without domain-adversarial training: their cells stay empty
                lines += [f"| {r['experiment']} | {m} | no DANN | – | – | – | – | – | – | – | – |" for m in others]
        if any(r.get("dann") for r in rows):
            lines += ["", "DANN: the posterior fine-tuned domain-adversarially (seed 004 appendix D) from the same "
                      "start as the plain row above it, with the prefix's dataset as source data; the heatmap and "
                      "MLP+UNet models have no domain-adversarial training (their cells: –)."]
        lines.append("")
    fid = content.get("fidelity", {})
    if fid.get("B"):
        lines += ["## Fidelity gap per cell (reality − twin RSRP on A's rows outside its training samples)", "",
                  "| cell | n | B mean [dB] | B RMSE [dB] | B' mean [dB] | B' RMSE [dB] |", "|---:|---:|---:|---:|---:|---:|"]
        after = {c["cell_id"]: c for c in fid.get("B'", [])}
        for c in fid["B"]:
            a = after.get(c["cell_id"], {})
            lines.append(f"| {c['cell_id']} | {c['n']} | {c['mean_db']:.1f} | {c['rmse_db']:.1f} "
                         f"| {_num(a.get('mean_db'))} | {_num(a.get('rmse_db'))} |")
        lines.append("")
    if fid.get("site_errors"):
        lines += ["## Site errors against the hidden truth (known-truth check)", "",
                  "| site | operator pos / h / az | calibrated pos / h / az | ρ before → after |", "|---|---|---|---|"]
        for s in fid["site_errors"]:
            o, c = s["operator"], s["calibrated"]
            lines.append(f"| {s['bs_id']} | {o['position_m']} m / {o['height_m']} m / {o['azimuth_deg']}° "
                         f"| {c['position_m']} m / {c['height_m']} m / {c['azimuth_deg']}° "
                         f"| {_num(s.get('rho_before'), '{:.3f}')} → {_num(s.get('rho_after'), '{:.3f}')} |")
        lines.append("")
    lines += ["## Read-out (truth-free prior)", "", "```json", json.dumps(content.get("readout", {}), indent=2), "```",
              ""]
    return "\n".join(lines)


def _figures(content: dict[str, Any], out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = content["rows"]
    priors = list(dict.fromkeys(r["prior_asked"] for r in rows))
    fig, axes = plt.subplots(1, len(priors), figsize=(6 * len(priors), 5), squeeze=False)
    for ax, prior in zip(axes[0], priors, strict=True):
        for r in [r for r in rows if r["prior_asked"] == prior]:
            k, u = _rmse(r, "known"), _rmse(r, "unknown")
            if k is None or u is None:
                continue
            marker = {"posterior": "o", "heatmap": "s", "mlp-unet": "D"}.get(r["model"], "^")
            ax.scatter(k, u, marker=marker, color="grey" if r["kind"] == "baseline" else None)
            ax.annotate(r["model"] if r["kind"] == "baseline" else f"{r['experiment']} ({r['model']})", (k, u),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("RMSE on known streets [m]")
        ax.set_ylabel("RMSE on unknown streets [m]")
        ax.set_title(f"prior {prior}" + (" (seeds' truth-centred protocol)" if prior == "truth" else " (truth-free)"),
                     fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle("Seed 004 Fig. 4: localization errors on known vs unknown streets (A's test part)", fontsize=10)
    fig.tight_layout()
    errors = out / "errors.png"
    fig.savefig(errors, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in [r for r in rows if r["prior_asked"] == priors[0] and r["kind"] == "model"]:
        u = _rmse(r, "unknown")
        if u is None:
            continue
        hours = r["compute"]["cpu_s"] / 3600.0
        ax.scatter(hours, u, marker={"posterior": "o", "heatmap": "s", "mlp-unet": "D"}.get(r["model"], "^"))
        ax.annotate(f"{r['experiment']} ({r['model']})", (hours, u), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("CPU hours of the row's stages")
    ax.set_ylabel("RMSE on unknown streets [m]")
    ax.set_title(f"Seed 004 Fig. 9: error vs compute (prior {priors[0]}, truth-free)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    compute = out / "compute.png"
    fig.savefig(compute, dpi=120)
    plt.close(fig)
    return {"errors_png": errors, "compute_png": compute}


def write_table(content: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``table.json``, ``table.md``, ``errors.png`` and ``compute.png`` into the folder ``out`` (atomically)."""
    from twin.io import atomic_dir

    out = Path(out)
    content = {**content, "readout": readout(content)}
    with atomic_dir(out, overwrite=out.exists(), kind="any") as tmp:
        (tmp / "table.json").write_text(json.dumps(content, indent=2, default=str))
        (tmp / "table.md").write_text(table_markdown(content))
        (tmp / "report.json").write_text(json.dumps({"kind": "study-table"}))  # marks the folder as ours
        figs = _figures(content, tmp)
    return {"json": out / "table.json", "md": out / "table.md",
            **{k: out / v.name for k, v in figs.items()}}
