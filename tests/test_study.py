"""Seed 004's study (study/): the proxy reality, the split rule, the tiny study end to end, user data as A."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.scenes import city_boxes, city_streets, make_box_scene
from twin.errors import InputError

TINY_PLAN = Path(__file__).parent / "data" / "study_tiny.yaml"


def _tiny_scene(out: Path) -> Path:
    return make_box_scene(out, half_size_m=200.0, cell_size_m=5.0, boxes=city_boxes(200.0), roads=city_streets(200.0))


# -- pieces ----------------------------------------------------------------------------------------------

def test_shadowing_field_has_the_asked_spread_and_correlation():
    from calibrate.simulate import shadowing_field

    field = shadowing_field((2, 400, 400), 5.0, 7.0, 50.0, np.random.default_rng(0))
    assert field.std(axis=(1, 2)) == pytest.approx([7.0, 7.0], rel=1e-6)
    # autocorrelation exp(-d^2 / (2 corr^2)): 0.61 at 50 m (10 px), ~0 at 200 m (40 px)
    f = field[0] / 7.0
    at = {d: float((f[:, :-d] * f[:, d:]).mean()) for d in (10, 40)}
    assert at[10] == pytest.approx(np.exp(-0.5), abs=0.12)
    assert abs(at[40]) < 0.15
    assert not np.allclose(field[0], field[1])  # one field per cell


def test_held_out_region_distances_are_those_of_the_blocks():
    from study.datasets import BLOCK_ID_BASE, HeldOut

    # blocks (bx=1, by=0) and (bx=0, by=2) of 100 m on origin (-200, -200)
    region = HeldOut(np.array([1, 2 * BLOCK_ID_BASE]), 100.0, (-200.0, -200.0), 15.0)
    assert region.rects_m().tolist() == [[-100.0, -200.0, 0.0, -100.0], [-200.0, 0.0, -100.0, 100.0]]
    pts = np.array([[-50.0, -150.0], [10.0, -150.0], [20.0, -150.0], [-150.0, 112.0], [150.0, 150.0], [np.nan, 0]])
    assert region.distance_m(pts[:5]).round(6).tolist() == [0.0, 10.0, 20.0, 12.0, pytest.approx(np.hypot(250, 50))]
    assert region.contains(pts).tolist() == [True, True, False, True, False, False]
    assert HeldOut.from_dict(region.to_dict()).to_dict() == region.to_dict()


def test_plan_errors_name_the_key(tmp_path):
    from study.plan import load_plan, parse_chain

    assert parse_chain("C->B'->A") == ("C", "B'", "A")
    with pytest.raises(InputError, match="'D->A'.*not datasets"):
        parse_chain("D->A")
    plan = tmp_path / "plan.yaml"
    plan.write_text("experiments: [\"A\", \"X->A\"]\n")
    with pytest.raises(InputError, match="X->A"):
        load_plan(plan)
    plan.write_text("priors: [truth]\n")
    with pytest.raises(InputError, match="must start with 'auto'"):
        load_plan(plan)
    plan.write_text("synthetic: {b_sampels: 3}\n")
    with pytest.raises(InputError, match="b_sampels"):
        load_plan(plan)
    plan.write_text("a: {drive_test: nowhere.csv, bs_file: nowhere_bs.csv}\n")
    with pytest.raises(FileNotFoundError, match="a.drive_test"):
        load_plan(plan)
    # domain-adversarial fine-tuning: lambda > 0, a chain of the plan's with a synthetic prefix, the posterior
    for dann, match in (
            ("{domain_adversarial_lambda: 0, experiments: [\"B'->A\"]}",
             r"'dann'.*domain_adversarial_lambda: 0.0 must be a number > 0"),
            ("{domain_adversarial_lambda: -0.1, experiments: [\"B'->A\"]}",
             r"'dann'.*domain_adversarial_lambda: -0.1 must"),
            ("{experiments: [\"A\"]}", r"dann.experiments: 'A' has no synthetic dataset"),
            ("{experiments: [\"A->B'\"]}", r"dann.experiments: \"A->B'\" has no synthetic"),
            ("{experiments: [\"B'->C\"]}", r"dann.experiments: \"B'->C\" is not among experiments"),
            ("{experiments: [\"X->A\"]}", r"dann.experiments: 'X->A'.*not datasets"),
            ("{experiments: [\"B'->A\"], lambda: 0.1}",
             r"unknown key\(s\) lambda; known: domain_adversarial_lambda")):
        plan.write_text(f"dann: {dann}\n")
        with pytest.raises(InputError, match=match):
            load_plan(plan)
    plan.write_text("models: [heatmap]\ndann: {experiments: [\"B'->A\"]}\n")
    with pytest.raises(InputError, match="dann.experiments: domain-adversarial fine-tuning is the posterior's"):
        load_plan(plan)
    plan.write_text("dann: {domain_adversarial_lambda: 0.3, experiments: [\"C->B'->A\"]}\n")
    ok = load_plan(plan)
    assert ok.dann_chains() == [("C", "B'", "A")] and ok.dann.domain_adversarial_lambda == 0.3
    plan.write_text("name: no-dann\n")
    assert load_plan(plan).dann_chains() == []  # off unless a plan names its chains


def test_shipped_plans_load():
    from study.plan import load_plan

    root = Path(__file__).parents[1] / "scenes"
    for name in ("study_plan.yaml", "study_plan_paper.yaml"):
        plan = load_plan(root / name)
        assert plan.experiments == ("A", "B'", "C", "B'->A", "C->A", "C->B'", "C->B'->A")
        assert plan.dann_chains() == [("B'", "A")] and plan.dann.domain_adversarial_lambda == 0.1
        assert plan.priors[0] == "auto"
    small = load_plan(root / "study_plan.yaml")
    # the one-core plan: every model on every chain, each training a step budget, the seed-004 baselines
    assert small.models == ("posterior", "heatmap", "mlp-unet") and small.train.posterior == "localize"
    t = small.train
    for overrides in (t.posterior_overrides, t.finetune_overrides, t.heatmap_overrides, t.heatmap_finetune_overrides,
                      t.unet_overrides, t.unet_finetune_overrides):
        assert overrides["train"]["total_steps"] > 0
    # the pose prior at the operator's tolerances and B' with the fitted power correction (calibrate.md)
    assert (small.calibrate.prior_xy_m, small.calibrate.prior_azimuth_deg, small.calibrate.write_offset) == (25.0, 20.0,
                                                                                                             True)
    assert {"wknn-seed004", "knn-square-seed004"} <= set(small.baselines)
    bench = Path(__file__).parents[1] / "bench"
    xs, s = load_plan(bench / "study_plan_xs.yaml"), load_plan(bench / "study_plan_s.yaml")
    # the 30-minute plan reuses xs's world, reality, A and C (same keys), changes calibration and training
    assert (s.reality, s.splits, s.synthetic, s.scene) == (xs.reality, xs.splits, xs.synthetic, xs.scene)
    assert s.calibrate.calls == 60 and s.calibrate.height_prior_m == 15.0 and s.train.posterior == "localize"
    assert "wknn-seed004" in s.baselines and s.priors[0] == "auto"


def test_calibration_pose_errors_against_the_truth_beside_rho():
    from study.datasets import calibration_pose_errors

    truth = pd.DataFrame({"bs_id": ["s0", "s0", "s1"], "x_m": [0.0, 0.0, 100.0], "y_m": [0.0, 0.0, 50.0],
                          "height_m": [30.0, 30.0, 40.0], "azimuth_deg": [350.0, 110.0, 90.0]})
    operator = truth.assign(x_m=[3.0, 3.0, 100.0], y_m=[4.0, 4.0, 30.0], height_m=[24.0, 24.0, 45.0],
                            azimuth_deg=[10.0, 130.0, 60.0])
    calibrated = truth.assign(x_m=[0.6, 0.6, 100.0], y_m=[0.8, 0.8, 40.0], height_m=[31.0, 31.0, 40.0],
                              azimuth_deg=[355.0, 115.0, 271.0])
    report = [{"bs_id": "s0", "rho_before": 0.41, "rho_after": 0.66, "status": "fitted"}]
    rows = calibration_pose_errors(truth, operator, calibrated, report)
    assert [r["bs_id"] for r in rows] == ["s0", "s1"]
    s0, s1 = rows
    assert s0["operator"] == {"position_m": 5.0, "height_m": -6.0, "azimuth_deg": 20.0}  # 350 -> 10: +20, wrapped
    assert s0["calibrated"] == {"position_m": 1.0, "height_m": 1.0, "azimuth_deg": 5.0}
    assert (s0["rho_before"], s0["rho_after"], s0["status"]) == (0.41, 0.66, "fitted")
    assert s1["operator"]["position_m"] == 20.0 and s1["calibrated"]["azimuth_deg"] == -179.0
    assert s1["rho_before"] is None  # not in the report: no ρ invented
    with pytest.raises(InputError, match="'s1'"):
        calibration_pose_errors(truth, operator, calibrated[calibrated["bs_id"] == "s0"])


@pytest.mark.slow
def test_reality_is_reproducible_from_its_seed(tmp_path):
    from study.reality import RealityConfig, make_reality

    scene = _tiny_scene(tmp_path / "scene")
    cfg = RealityConfig(n_sites=2, samples_per_tx=50_000, min_spacing_m=100.0, margin_m=40.0, radius_m=600.0)
    outs = []
    for k, seed in enumerate((5, 5, 6)):
        (tmp_path / f"r{k}").mkdir()
        outs.append(make_reality(scene, tmp_path / f"r{k}", cfg, seed=seed))
    for name in ("truth_bs", "operator_bs", "drive_test"):
        a, b, c = (Path(getattr(o, name)).read_bytes() for o in outs)
        assert a == b, name
        assert a != c, name
    truth, operator = pd.read_csv(outs[0].truth_bs), pd.read_csv(outs[0].operator_bs)
    assert truth["cell_id"].tolist() == operator["cell_id"].tolist() == [1, 2, 3, 4, 5, 6]
    assert truth["height_m"].between(25, 45).all() and truth["tilt_deg"].between(2, 10).all()
    moved = np.hypot(operator["x_m"] - truth["x_m"], operator["y_m"] - truth["y_m"])
    assert (moved > 0.1).all() and (moved < 5 * 25 * np.sqrt(2)).all()  # tens of metres, per site
    dt = pd.read_csv(outs[0].drive_test)
    assert list(dt.columns) == ["time", "lon", "lat", "cell_id", "rssi_dbm", "rsrp_dbm", "rsrq_db", "sinr_db"]
    assert set(dt["cell_id"]) <= set(truth["cell_id"]) and len(dt) > 100
    assert (dt["rsrp_dbm"] == dt["rsrp_dbm"].round()).all()  # 1 dB reporting quantization
    # the reality's world: other heights and materials than the twin's, same footprints
    world = pd.read_parquet(Path(outs[0].scene) / "buildings.parquet")
    twin_b = pd.read_parquet(Path(scene) / "buildings.parquet")
    assert len(world) == len(twin_b) and not np.allclose(world["height_m"], twin_b["height_m"])
    assert set(world["material"]) - {"concrete"}
    info = json.loads(Path(outs[0].info).read_text())
    assert [s["position_m"] for s in info["operator_error"]] == pytest.approx(
        [float(moved[truth["bs_id"] == b].iloc[0]) for b in sorted(truth["bs_id"].unique())], abs=0.01)


# -- the tiny study end to end ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    shutil.copy(TINY_PLAN, root / "plan.yaml")
    _tiny_scene(root / "scene")
    from cli.learn import main

    result = CliRunner().invoke(main, ["study", str(root / "plan.yaml"), "--out", str(root / "out"), "--quiet"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return root, result.output


@pytest.mark.slow
def test_tiny_study_writes_table_1(tiny_study):
    root, output = tiny_study
    table = json.loads((root / "out" / "table" / "table.json").read_text())
    rows = table["rows"]
    plan_experiments = ["A", "B' zero-shot", "C zero-shot", "B' -> A", "C -> A", "C -> B' zero-shot",
                        "C -> B' -> A"]
    dann = "B' -> A + DANN (λ = 0.5)"
    for prior in ("auto", "truth"):
        got = [(r["experiment"], r["model"]) for r in rows if r["prior_asked"] == prior and r["kind"] == "model"]
        expected = [(e, m) for e in plan_experiments for m in ("posterior", "heatmap", "mlp-unet")]
        expected.insert(expected.index(("B' -> A", "mlp-unet")) + 1, (dann, "posterior"))
        assert got == expected
        base = [r["model"] for r in rows if r["prior_asked"] == prior and r["kind"] == "baseline"]
        assert base == ["wknn", "knn-square", "mapmatch", "prior-only"]
    for r in rows:
        assert r["parts"]["known"]["n"] > 0 and r["parts"]["unknown"]["n"] > 0
        assert np.isfinite(r["parts"]["unknown"]["rmse_m"])
        if r["kind"] == "model":
            assert r["compute"]["wall_s"] > 0 and r["compute"]["cpu_s"] > 0
            assert "reality" not in r["compute"]["stages"]
            if r["model"] == "posterior":
                assert np.isfinite(r["parts"]["unknown"]["nll"]) and "coverage90" in r["parts"]["unknown"]
    # the MLP+UNet: trained on every chain, a later stage starting from its prefix's best.pt
    unet = {r["experiment"]: r for r in rows if r["model"] == "mlp-unet" and r["prior_asked"] == "auto"}
    for r in unet.values():
        assert np.isfinite(r["parts"]["known"]["rmse_m"]) and np.isfinite(r["parts"]["unknown"]["rmse_m"])
        assert r["parts"]["unknown"]["rmse_m"] > 0
    stage = json.loads((root / "out" / "train" / "mlp-unet" / "C-Bp-A" / "stage.json").read_text())
    assert stage["result"]["init"].endswith(str(Path("mlp-unet") / "C-Bp" / "run" / "best.pt"))
    loaded, total = stage["result"]["init_loaded"]
    assert 0 < loaded <= total and stage["result"]["steps"] == 2
    assert "train/mlp-unet/C-Bp" in unet["C -> B' -> A"]["compute"]["stages"]
    # the row's compute is its own stages: B' zero-shot pays for calibration, A does not
    cost = {r["experiment"]: r["compute"]["stages"] for r in rows if r["model"] == "posterior"
            and r["prior_asked"] == "auto"}
    assert "calibrate" in cost["B' zero-shot"] and "calibrate" not in cost["A"] and "C" in cost["C -> B' -> A"]
    assert table["datasets"]["A"]["A"]["train_sequences"] > 50
    md = (root / "out" / "table" / "table.md").read_text()
    assert "## Under the prior `auto` (truth-free)" in md
    assert "## Under the prior `truth` — the seeds' truth-centred protocol (not deployable)" in md
    assert md.index("`auto`") < md.index("`truth`")
    assert md.count("| C -> B' -> A | mlp-unet |") == 2  # under both priors
    for png in ("errors.png", "compute.png"):
        assert (root / "out" / "table" / png).read_bytes()[:4] == b"\x89PNG"
    # the fidelity gap per cell, before and after calibration, and the known-truth site errors
    fid = table["fidelity"]
    assert [c["cell_id"] for c in fid["B"]] == [1, 2, 3, 4, 5, 6] and fid["site_errors"]
    assert all(-1 <= e["rho_before"] <= 1 and -1 <= e["rho_after"] <= 1 for e in fid["site_errors"])
    assert " → " in md.split("## Site errors")[1].split("##")[0] and "| – → – |" not in md
    assert "fidelity_B_mean_rmse_db" in table["readout"]
    c_bp = next(r for r in rows if r["experiment"] == "C -> B' zero-shot" and r["model"] == "heatmap"
                and r["prior_asked"] == "auto")
    assert table["readout"]["heatmap"]["C_Bp_zero_shot_unknown_rmse_m"] == c_bp["parts"]["unknown"]["rmse_m"]
    # scored from the run C -> B' -> A starts from
    assert {"train/heatmap/C", "train/heatmap/C-Bp"} <= set(c_bp["compute"]["stages"])
    assert "train/heatmap/C-Bp-A" not in c_bp["compute"]["stages"]
    assert "unknown" in output and "wrote" in output


@pytest.mark.slow
def test_tiny_study_trains_the_domain_adversarial_row(tiny_study):
    import torch

    root, _ = tiny_study
    out = root / "out"
    train = out / "train" / "posterior"
    dann, plain = (json.loads((train / name / "stage.json").read_text()) for name in ("Bp-A-dann", "Bp-A"))
    # the plain fine-tuning's start, B' as source data, the adversary on: its loss term and its classifier
    assert dann["result"]["init"] == plain["result"]["init"] and dann["result"]["init"].endswith(
        str(Path("posterior") / "Bp" / "run" / "best.pt"))
    assert dann["result"]["source"] == str(out / "Bp" / "corpus.zarr")
    assert dann["result"]["domain_adversarial_lambda"] == 0.5 and "source" not in plain["result"]
    assert {"A", "Bp", "train/posterior/Bp"} <= set(dann["deps"])
    metrics = pd.read_csv(train / "Bp-A-dann" / "run" / "metrics.csv")
    trained = metrics["domain"].dropna()  # training rows (the validation rows have no domain term)
    assert len(trained) and (trained > 0).all()  # the domain cross-entropy was trained
    assert "domain" not in pd.read_csv(train / "Bp-A" / "run" / "metrics.csv").columns
    state = torch.load(train / "Bp-A-dann" / "run" / "last.pt", map_location="cpu", weights_only=False)["model"]
    assert any(k.startswith("domain_classifier.") for k in state)
    table = json.loads((out / "table" / "table.json").read_text())
    label = "B' -> A + DANN (λ = 0.5)"
    for prior in ("auto", "truth"):
        d = next(r for r in table["rows"] if r["experiment"] == label and r["prior_asked"] == prior)
        p = next(r for r in table["rows"] if r["experiment"] == "B' -> A" and r["model"] == "posterior"
                 and r["prior_asked"] == prior)
        assert d["model"] == "posterior" and d["dann"]["source"] == "B'"
        for part in ("known", "unknown"):  # another model than the plain fine-tuning's
            assert d["parts"][part]["n"] == p["parts"][part]["n"] > 0
            assert d["parts"][part]["mean_m"] != p["parts"][part]["mean_m"]
        assert "train/posterior/Bp-A-dann" in d["compute"]["stages"] and "Bp" in d["compute"]["stages"]
        # its compute: the plain row's with its own fine-tuning in place of the plain one
        assert "train/posterior/Bp-A" not in d["compute"]["stages"]
        assert d["compute"]["cpu_s"] == pytest.approx(p["compute"]["cpu_s"] - plain["cpu_s"] + dann["cpu_s"], abs=0.05)
    (read,) = table["readout"]["dann"]
    d_auto = next(r for r in table["rows"] if r["experiment"] == label and r["prior_asked"] == "auto")
    p_auto = next(r for r in table["rows"] if r["experiment"] == "B' -> A" and r["model"] == "posterior"
                  and r["prior_asked"] == "auto")
    assert read["dann_cut_unknown_m"] == round(p_auto["parts"]["unknown"]["rmse_m"]
                                               - d_auto["parts"]["unknown"]["rmse_m"], 1)
    md = (out / "table" / "table.md").read_text()
    for model in ("heatmap", "mlp-unet"):  # no DANN for them: their cells stay empty, under both priors
        assert md.count(f"| {label} | {model} | no DANN | – |") == 2
    assert md.count(f"| {label} | posterior |") == 2 and "no domain-adversarial training" in md


@pytest.mark.slow
def test_split_rule_no_synthetic_sample_on_a_held_out_street(tiny_study):
    from learn.splits import block_ids
    from study.datasets import HeldOut
    from twin.corpus.store import open_corpus

    out = tiny_study[0] / "out"
    region = HeldOut.from_dict(json.loads((out / "A" / "held_out.json").read_text()))
    a = open_corpus(out / "A" / "corpus.zarr")
    b = a.batch(slice(None), ["position_xy_m", "split_spatial", "group_id"])
    val_or_unknown = (b["split_spatial"] == 1) | ((b["split_spatial"] == 2) & ~np.isin(
        b["group_id"], b["group_id"][b["split_spatial"] == 0]))
    assert set(np.unique(b["group_id"][val_or_unknown])) == set(region.blocks.tolist()) and len(region.blocks) >= 2
    assert not (out / "B").exists()  # B is built only when an experiment trains on it (none here)
    for name in ("Bp", "C"):
        stage = json.loads((out / name / "stage.json").read_text())
        assert stage["result"]["split_rule"]["dropped"] > 0  # the rule had work to do
        syn = open_corpus(out / name / "corpus.zarr")
        s = syn.batch(slice(None), ["event_xy_m", "mask", "position_xy_m"])
        pts = np.concatenate([s["event_xy_m"][s["mask"]], s["position_xy_m"]]).astype(np.float64)
        blocks = block_ids(pts, region.block_m, region.origin_m)
        assert not np.isin(blocks, region.blocks).any(), name
        assert region.distance_m(pts).min() > region.buffer_m, name


@pytest.mark.slow
def test_calibration_saw_only_a_training_rows(tiny_study):
    out = tiny_study[0] / "out"
    rows = pd.read_csv(out / "calibrate" / "drive_test_train.csv")
    full = pd.read_csv(out / "reality" / "drive_test.csv")
    stage = json.loads((out / "calibrate" / "stage.json").read_text())
    assert stage["result"]["train_rows"] == len(rows) < stage["result"]["all_rows"] == len(full)
    from study.datasets import HeldOut

    region = HeldOut.from_dict(json.loads((out / "A" / "held_out.json").read_text()))
    from twin.scene.build import load_twin_scene

    frame = load_twin_scene(tiny_study[0] / "scene").frame
    from learn.splits import block_ids

    x, y = frame.to_scene(rows["lon"].to_numpy(), rows["lat"].to_numpy())
    blocks = block_ids(np.stack([x, y], 1), region.block_m, region.origin_m)
    assert not np.isin(blocks, region.blocks).any()  # no calibration row in a held-out block


@pytest.mark.slow
def test_tiny_study_resumes_without_redoing_stages(tiny_study):
    root, _ = tiny_study
    before = (root / "out" / "train" / "posterior" / "A" / "stage.json").read_text()
    from study.run import run_study

    lines: list[str] = []
    run_study(root / "plan.yaml", root / "out", progress=False, log=lines.append)
    assert not [s for s in lines if s.startswith("[run ")]
    assert any(s.startswith("[skip] train/posterior/C-Bp-A") for s in lines)
    assert (root / "out" / "train" / "posterior" / "A" / "stage.json").read_text() == before
    other = (root / "other.yaml")
    other.write_text((root / "plan.yaml").read_text().replace("seed: 0", "seed: 1"))
    with pytest.raises(InputError, match="another plan"):
        run_study(other, root / "out", progress=False, log=lines.append)


@pytest.mark.slow
def test_a_users_own_drive_test_bs_file_and_scene_as_a(tiny_study, tmp_path):
    """How a user with real data runs the study: `a:` names their drive test and BS file."""
    root, _ = tiny_study
    shutil.copy(root / "out" / "reality" / "drive_test.csv", tmp_path / "my_drive_test.csv")
    shutil.copy(root / "out" / "reality" / "operator_bs.csv", tmp_path / "my_bs.csv")
    plan = "".join(line for line in TINY_PLAN.read_text().splitlines(keepends=True)
                   if not line.startswith(("experiments:", "dann:")))  # its own experiments below
    plan = plan.replace("scene: {scene_dir: scene}", f"scene: {{scene_dir: {root / 'scene'}}}")
    plan += ("a: {drive_test: my_drive_test.csv, bs_file: my_bs.csv}\n"
             "experiments: [\"A\", \"B'\", \"B'->A\"]\nmodels: [posterior]\nbaselines: [knn-square]\npriors: [auto]\n")
    (tmp_path / "plan.yaml").write_text(plan)
    from cli.learn import main

    result = CliRunner().invoke(main, ["study", str(tmp_path / "plan.yaml"), "--out", str(tmp_path / "out"),
                                       "--quiet"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    table = json.loads((tmp_path / "out" / "table" / "table.json").read_text())
    assert table["a_source"] == "user"
    assert [(r["experiment"], r["model"]) for r in table["rows"]] == [
        ("A", "knn-square"), ("A", "posterior"), ("B' zero-shot", "posterior"), ("B' -> A", "posterior")]
    assert "site_errors" not in table["fidelity"]  # no hidden truth with real data
    assert not (tmp_path / "out" / "C").exists()   # C is built only when an experiment trains on it
    assert (tmp_path / "out" / "reality" / "drive_test.csv").read_bytes() == (tmp_path / "my_drive_test.csv").read_bytes()


def test_bad_user_drive_test_is_named(tmp_path):
    scene = _tiny_scene(tmp_path / "scene")
    (tmp_path / "dt.csv").write_text("time,lon,lat,cell_id,rsrp_dbm\n0,24.94,60.17,1,-80\n")
    (tmp_path / "bs.csv").write_text("bs_id,cell_id,x_m,y_m,height_m,azimuth_deg\nA,1,0,0,30,0\n")
    (tmp_path / "plan.yaml").write_text(f"scene: {{scene_dir: {scene}}}\na: {{drive_test: dt.csv, bs_file: nope.csv}}\n")
    from cli.learn import main

    result = CliRunner().invoke(main, ["study", str(tmp_path / "plan.yaml"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "a.bs_file" in result.output and "nope.csv" in result.output


def test_a_foreign_folder_is_not_taken_as_a_study(tmp_path):
    from study.run import run_study
    from twin.errors import OutputExistsError

    (tmp_path / "out" / "A").mkdir(parents=True)
    (tmp_path / "plan.yaml").write_text("name: x\n")
    with pytest.raises(OutputExistsError, match="holds no study"):
        run_study(tmp_path / "plan.yaml", tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "A").is_dir()


def test_study_help_ends_with_an_example_that_loads():
    from cli.learn import main

    res = CliRunner().invoke(main, ["study", "--help"])
    assert res.exit_code == 0 and "learn study scenes/study_plan.yaml --out" in res.output.split("Example:")[1]
