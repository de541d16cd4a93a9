"""Training, checkpoints, fine-tuning, prediction and the schedule of the posterior model.

The corpus-backed dataset (learn.data) is exercised in its own tests; here the loop is
fed in-memory datasets of contract batch dicts (tests/learn_batch.py).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from learn.checkpoint import load_checkpoint, save_checkpoint
from learn.predict import load_posterior, plot_posteriors, predict_batches
from learn.refine import RefineConfig
from learn.registry import load_method
from learn.schedule import ScheduleConfig, wsd_lr
from learn.train import EpochSampler, load_run_config, train
from tests.learn_batch import SyntheticDataset, synthetic_batch, synthetic_info
from twin.errors import CheckpointError, InputError, OutputExistsError


def small_config(**train_kw):
    return load_run_config("small", {"data": {"crop_px": 32},
                                     "train": {"num_workers": 0, "batch_size": 8, "log_every": 1,
                                               "val_batches": 1, **train_kw}})


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    ds = SyntheticDataset(16, s=32)
    out = tmp_path_factory.mktemp("pre") / "run"
    train([], small_config(epochs=2), out, datasets=(ds, ds, synthetic_info()), progress=False)
    return out


def test_wsd_schedule():
    cfg = ScheduleConfig(lr=1.0, warmup_frac=0.1, decay_frac=0.2, min_lr=0.0, total_steps=100)
    lrs = [wsd_lr(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(v == 1.0 for v in lrs[10:80])
    assert lrs[80] == pytest.approx(0.95) and lrs[99] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(lrs[80:], lrs[81:], strict=False))
    linear = ScheduleConfig(lr=2.0, warmup_frac=0.0, decay_frac=1.0, total_steps=4)  # seed 004 fine-tuning
    assert [wsd_lr(s, linear) for s in range(4)] == pytest.approx([1.5, 1.0, 0.5, 0.0])


def test_presets_and_strict_config(tmp_path):
    paper = load_run_config("paper")
    assert (paper.model.d_radio, paper.model.radio_layers, paper.model.radio_heads) == (256, 4, 8)
    assert (paper.model.d_map, paper.model.map_layers, paper.model.map_heads, paper.model.patch_size) == (384, 6, 6, 16)
    assert (paper.model.grid_size, paper.model.top_k, paper.data.crop_px) == (32, 5, 256)
    assert (paper.model.lambda_coarse, paper.model.lambda_fine, paper.train.lr) == (0.5, 1.0, 2e-4)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  d_radio: 64\n  n_layerz: 3\n")
    with pytest.raises(InputError, match=r"bad.yaml.*n_layerz"):
        load_run_config(bad)


def test_localize_preset_is_small_with_the_measured_switches():
    from dataclasses import asdict

    small, localize = load_run_config("small"), load_run_config("localize")
    switches = {("model", "coarse_head"): "dense", ("model", "coarse_prior"): "likelihood",
                ("model", "fine_anchor"): "likelihood", ("data", "likelihood"): True,
                ("data", "train_crops"): "auto", ("data", "crop_px"): 128, ("model", "patch_size"): 16,
                ("refine", "multi_start"): False, ("refine", "steps"): 20}
    for section in ("model", "train", "data", "refine"):
        a, b = asdict(getattr(small, section)), asdict(getattr(localize, section))
        differing = {k for k in a if a[k] != b[k]}
        assert differing == {k for (s, k) in switches if s == section}, section
        for (s, k), value in switches.items():
            if s == section:
                assert b[k] == value, (section, k)


def test_epoch_sampler_shards_and_resumes():
    full = list(EpochSampler(10, seed=1, epoch=0))
    assert sorted(full) == list(range(10)) and full != list(range(10))
    assert list(EpochSampler(10, seed=1, epoch=0, start=4)) == full[4:]
    r0, r1 = list(EpochSampler(10, 1, 0, rank=0, world=2)), list(EpochSampler(10, 1, 0, rank=1, world=2))
    assert sorted(r0 + r1) == list(range(10))
    assert full != list(EpochSampler(10, seed=1, epoch=1))


@pytest.mark.slow
def test_tiny_model_overfits_tiny_corpus(tmp_path):
    """About 20 s on an idle 2-core CPU. The loop learns: median error on the training crops falls well below chance (~230 m).

    150 epochs leave a margin whatever the seed (medians of 4-38 m for seeds 1-3; 60 epochs gave 31-124 m).
    """
    ds = SyntheticDataset(32, s=32)
    cfg = load_run_config("small", {"data": {"crop_px": 32},
                                    "train": {"epochs": 150, "num_workers": 0, "batch_size": 16, "lr": 3e-3,
                                              "log_every": 20, "val_batches": 2}})
    res = train([], cfg, tmp_path / "run", datasets=(ds, ds, synthetic_info()), progress=False)
    model, _ = load_posterior(tmp_path / "run" / "last.pt")
    batch = torch.utils.data.default_collate([ds[i] for i in range(32)])
    pred = predict_batches(model, [batch])
    err = np.linalg.norm(pred["mean_xy_m"] - pred["truth_xy_m"], axis=1)
    assert np.median(err) < 60.0, np.median(err)
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    losses = [float(r["loss"]) for r in rows if r["loss"]]
    assert losses[-1] < losses[0] - 3.0
    assert res.steps == 300 and (tmp_path / "run" / "tb").is_dir()


def test_resume_matches_uninterrupted_run(tmp_path):
    ds = SyntheticDataset(16, s=32)
    info = synthetic_info()
    train([], small_config(epochs=3), tmp_path / "full", datasets=(ds, None, info), progress=False)
    train([], small_config(epochs=3, max_steps=3), tmp_path / "part", datasets=(ds, None, info), progress=False)
    # resume continues with the saved config; lift the step cap by editing it, as a user would via config
    ck = load_checkpoint(tmp_path / "part" / "last.pt")
    assert ck["step"] == 3 and ck["epoch"] == 1
    ck["configs"]["train"]["max_steps"] = None
    save_checkpoint(tmp_path / "part" / "last.pt", {k: v for k, v in ck.items() if k not in ("kind", "schema_version")})
    train([], small_config(epochs=3), tmp_path / "part", datasets=(ds, None, info), resume=True, progress=False)
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "part" / "last.pt")
    assert a["step"] == b["step"] == 6
    assert a["history"]["epoch"] == b["history"]["epoch"] == [1.0, 2.0, 3.0]
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5), k
    with pytest.raises(OutputExistsError):
        train([], small_config(epochs=1), tmp_path / "full", datasets=(ds, None, info), progress=False)
    with pytest.raises(InputError, match="nothing to resume"):
        train([], small_config(), tmp_path / "new", datasets=(ds, None, info), resume=True, progress=False)


def test_finetune_loads_pretrain_checkpoint(pretrained, tmp_path):
    pre = load_checkpoint(pretrained / "last.pt")
    # the fine-tuning corpus has another cell vocabulary: cells 1..4 kept (rows 1..4), 100.. new
    ds = SyntheticDataset(8, s=32, n_cells=12)
    info = {**synthetic_info(n_cells=12), "cell_vocab": ["1", "2", "3", "4", *[str(c) for c in range(100, 107)]]}
    cfg = load_run_config("finetune", {"data": {"crop_px": 32},
                                       "train": {"epochs": 1, "num_workers": 0, "batch_size": 8, "lr": 0.0,
                                                 "val_batches": 0}})
    train([], cfg, tmp_path / "ft", init=pretrained / "last.pt", datasets=(ds, None, info), progress=False)
    ft = load_checkpoint(tmp_path / "ft" / "last.pt")
    assert ft["configs"]["model"]["d_radio"] == pre["configs"]["model"]["d_radio"]
    assert ft["configs"]["model"]["n_cells"] == 12 and ft["cell_vocab"][4] == "100"
    emb_pre, emb_ft = pre["model"]["radio.tokens.cell.weight"], ft["model"]["radio.tokens.cell.weight"]
    assert torch.allclose(emb_ft[1:5], emb_pre[1:5])  # shared cells keep their embeddings (lr 0)
    assert torch.allclose(ft["model"]["coarse.net.1.weight"], pre["model"]["coarse.net.1.weight"])
    # a checkpoint of another map size cannot initialize this data
    bad_info = {**info, "map_channels": 5}
    with pytest.raises(CheckpointError, match="do not match"):
        train([], cfg, tmp_path / "ft2", init=pretrained / "last.pt", datasets=(ds, None, bad_info), progress=False)


def test_corrupted_and_foreign_checkpoints(pretrained, tmp_path):
    good = (pretrained / "last.pt").read_bytes()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(trunc)
    evil = tmp_path / "evil.pt"
    torch.save({"kind": "posterior", "obj": Path("x")}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    other = tmp_path / "heat.pt"
    torch.save({"kind": "heatmap", "schema_version": 1, "model": {}, "configs": {}, "step": 0}, other)
    with pytest.raises(CheckpointError, match="'heatmap' checkpoint"):
        load_checkpoint(other)
    ck = load_checkpoint(pretrained / "last.pt")
    ck["schema_version"] = 99
    torch.save(ck, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="schema_version 99"):
        load_checkpoint(tmp_path / "v99.pt")
    ck = load_checkpoint(pretrained / "last.pt")
    ck["configs"]["model"]["d_radio"] = 32
    torch.save(ck, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_posterior(tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")


def test_best_checkpoint_follows_select_on(pretrained, tmp_path):
    # val_loss (the default): best.pt is the epoch of the lowest validation loss in the history
    hist = load_checkpoint(pretrained / "last.pt")["history"]
    best = load_checkpoint(pretrained / "best.pt")
    assert hist["epoch"] == [1.0, 2.0] and len(hist["val_loss"]) == 2 and np.isfinite(hist["val_mean_m"]).all()
    assert best["epoch"] == best["best_epoch"] == 1 + int(np.argmin(hist["val_loss"]))
    assert best["best_val"] == pytest.approx(min(hist["val_loss"]))
    assert (pretrained / "curve.png").stat().st_size > 1000
    # val_mean_m: the epoch of the lowest mean localization error [m]
    ds = SyntheticDataset(16, s=32)
    res = train([], small_config(epochs=3, select_on="val_mean_m", val_batches=None, lr=3e-3), tmp_path / "m",
                datasets=(ds, ds, synthetic_info()), progress=False)
    assert res.best_val == pytest.approx(min(res.history["val_mean_m"]))
    assert load_checkpoint(tmp_path / "m" / "best.pt")["epoch"] == 1 + int(np.argmin(res.history["val_mean_m"]))
    with pytest.raises(InputError, match="select_on"):
        small_config(select_on="val_p90_m")


def test_every_reader_checks_the_file(pretrained, tmp_path):
    """The registry (learn eval --ckpt), the posterior reader and fine-tuning refuse bad files naming them."""
    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    ck = load_checkpoint(pretrained / "last.pt")
    old = tmp_path / "old.pt"
    torch.save({**ck, "schema_version": 1}, old)
    for reader in (load_method, load_posterior, lambda p: load_checkpoint(p, kind=None)):
        with pytest.raises(CheckpointError, match=r"noise\.pt: corrupted"):
            reader(noise)
        with pytest.raises(CheckpointError, match=r"old\.pt: checkpoint schema_version 1"):
            reader(old)
    with pytest.raises(CheckpointError, match=r"old\.pt: checkpoint schema_version 1"):
        train([], small_config(), tmp_path / "ft", init=old, datasets=(SyntheticDataset(4, s=32), None,
                                                                       synthetic_info()), progress=False)
    torch.save({"model": {}}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match=r"plain\.pt: not a learn checkpoint \(missing kind"):
        load_method(tmp_path / "plain.pt")


def test_predict_batches_registry_and_heatmaps(pretrained, tmp_path):
    method = load_method(pretrained / "best.pt")
    assert type(method).__name__ == "PosteriorMethod"
    batch = synthetic_batch(b=5, s=32, seed=3)
    batch["crop_origin_m"] = torch.tensor([[1000.0, -200.0]]).repeat(5, 1)
    res = predict_batches(method.model, [batch], RefineConfig(steps=5), keep_mixtures=2)
    truth = batch["crop_origin_m"].numpy() + batch["target_xy"].numpy() * 600.0
    assert np.allclose(res["truth_xy_m"], truth, atol=1e-3)
    assert res["xy_m"].shape == (5, 2) and res["refined_xy_m"].shape == (5, 2)
    # the NLL per m² is the crop-unit NLL plus 2 log(600)
    out, _ = method.model(batch)
    nll_unit = -out.mixture.log_prob(batch["target_xy"]).detach().numpy()
    assert np.allclose(res["nll"], nll_unit + 2 * math.log(600.0), atol=1e-4)
    assert ((res["hdr_level"] >= 0) & (res["hdr_level"] <= 1)).all()
    paths = plot_posteriors(res["mixtures"], tmp_path / "plots")
    assert len(paths) == 2 and all(p.stat().st_size > 10_000 for p in paths)


def test_total_steps_sets_the_run_length_and_the_schedule_decays_to_its_end(tmp_path):
    """A budget in steps (minutes x a measured speed): 10 steps over 3-step epochs end at min_lr, not cut short."""
    ds = SyntheticDataset(24, s=32)  # batch 8: 3 steps per epoch
    cfg = small_config(total_steps=10, epochs=1, min_lr=1e-5)
    res = train([], cfg, tmp_path / "run", datasets=(ds, None, synthetic_info()), progress=False)
    assert res.steps == 10 and res.epochs == 3  # three whole epochs and one step of the fourth
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    lrs = [float(r["lr"]) for r in rows if r["lr"]]
    assert len(lrs) == 10 and lrs[-1] == pytest.approx(1e-5) and max(lrs) == pytest.approx(1e-3)
    assert lrs[-2] == pytest.approx(1e-3 + (1e-5 - 1e-3) * 0.5)  # the decay spans the last 20 % of the 10 steps
    with pytest.raises(InputError, match="total_steps"):
        small_config(total_steps=0)


def test_snapshots_of_one_run_are_its_weights_at_their_step_and_training_time(tmp_path):
    """train.snapshot_steps / snapshot_minutes: the learning curve's points are one run's checkpoints."""
    ds = SyntheticDataset(24, s=32)  # batch 8: 3 steps per epoch
    info = synthetic_info()
    cfg = small_config(total_steps=8, epochs=1, snapshot_steps=(2, 5), snapshot_minutes=(0.0001, 600.0))
    res = train([], cfg, tmp_path / "run", datasets=(ds, None, info), progress=False)
    # 0.0001 min (6 ms) has passed after the first step; 600 min never: not written
    assert [(s["at"], s["step"]) for s in res.snapshots] == [("0.0001min", 1), ("step2", 2), ("step5", 5)]
    assert not (tmp_path / "run" / "snapshot_600min.pt").exists()
    assert res.snapshots[0]["train_s"] >= 0.006 and res.train_s >= res.snapshots[-1]["train_s"]
    for s in res.snapshots:
        ck = load_checkpoint(tmp_path / "run" / s["file"])
        assert ck["step"] == s["step"] and ck["train_s"] == s["train_s"]
        assert load_method(tmp_path / "run" / s["file"]).name  # a full checkpoint: eval / predict load it
    # the snapshot at step 5 is the same schedule stopped at step 5 (max_steps keeps the schedule), not the end
    cut = train([], small_config(total_steps=8, epochs=1, max_steps=5), tmp_path / "cut", datasets=(ds, None, info),
                progress=False)
    assert cut.steps == 5
    snap = load_checkpoint(tmp_path / "run" / "snapshot_step5.pt")["model"]
    stop = load_checkpoint(tmp_path / "cut" / "last.pt")["model"]
    end = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert all(torch.allclose(snap[k], stop[k], atol=1e-6) for k in snap)
    assert not all(torch.allclose(snap[k], end[k]) for k in snap)
    with pytest.raises(InputError, match="snapshot_minutes"):
        small_config(snapshot_minutes=(0.0,))
    with pytest.raises(InputError, match="snapshot_steps"):
        small_config(snapshot_steps=(0,))


def test_total_minutes_is_a_time_budget_whose_schedule_follows_the_time_spent(tmp_path):
    """train.total_minutes: the run stops once its training time is spent; warm-up, stable and decay by time."""
    from learn.schedule import wsd_lr_at

    sched = ScheduleConfig(lr=1e-3, warmup_frac=0.1, decay_frac=0.2, min_lr=0.0)
    assert [wsd_lr_at(p, sched) for p in (0.0, 0.05, 0.5, 0.9, 1.0, 2.0)] == pytest.approx(
        [0.0, 5e-4, 1e-3, 5e-4, 0.0, 0.0])
    ds = SyntheticDataset(24, s=32)  # batch 8: 3 steps per epoch
    budget_min = 0.05  # 3 s: tens of steps of the tiny model, over several epochs
    res = train([], small_config(total_minutes=budget_min, epochs=1, snapshot_minutes=(0.02,)), tmp_path / "run",
                datasets=(ds, None, synthetic_info()), progress=False)
    assert res.epochs > 1 and res.steps > 6  # epochs: 1 does not bound a time budget
    assert res.train_s >= budget_min * 60 and [s["at"] for s in res.snapshots] == ["0.02min"]
    rows = [r for r in csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()) if r["lr"]]
    lrs = [float(r["lr"]) for r in rows]
    assert len(lrs) == res.steps and int(rows[-1]["step"]) == res.steps  # the last step is logged
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(1e-3) and lrs[0] < 1e-3 and lrs[-1] < 0.2 * 1e-3  # decayed at the end
    assert all(b <= a + 1e-12 for a, b in zip(lrs[peak:], lrs[peak + 1:], strict=False))
    with pytest.raises(InputError, match="not both"):
        small_config(total_minutes=1.0, total_steps=10)
    with pytest.raises(InputError, match="total_minutes"):
        small_config(total_minutes=0.0)


def test_likelihood_from_scratch_on_a_corpus_without_cell_maps_is_refused(tmp_path):
    """The localize preset's likelihood inputs need per-cell maps: a real-style import without them is named."""
    from tests.test_learn_eval import _grid_corpus

    corpus = _grid_corpus(tmp_path / "g.zarr")
    with pytest.raises(InputError, match=r"g\.zarr holds no per-cell radio maps.*data\.likelihood: false"):
        train([corpus.url], load_run_config("localize"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
