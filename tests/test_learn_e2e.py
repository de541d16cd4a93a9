"""The posterior model on corpora written by the real ``twin sample`` path, through the CLI.

A tiny city (tests/data/tiny_city) is sampled twice: corpus A with four cells, corpus B
with a fifth site (another cell vocabulary that shares A's four cells). A tiny model
pretrains on A (two DataLoader workers), is judged by ``learn eval --ckpt`` and used by
``learn predict``, then fine-tunes on B.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

import cli.learn  # noqa: F401  (registers pretrain, finetune, predict)
from learn.checkpoint import load_checkpoint
from learn.data import CorpusDataset, DataConfig, align_features, eval_dataset
from learn.predict import _corpus_loader, load_posterior, predict_batches
from learn.train import load_run_config, train
from tests.data.tiny_city.make import default_sites, make_maps, make_scene
from tests.learn_batch import TINY_MODEL_YAML, learn_cli
from twin.corpus.sampler import SampleConfig, sample
from twin.corpus.store import open_corpus
from twin.errors import InputError
from twin.scene.build import load_twin_scene

CONFIG = TINY_MODEL_YAML + """\
train:
  epochs: 2
  batch_size: 16
  num_workers: 2
  lr: 3.0e-3
  log_every: 2
  val_batches: 1
  split_scheme: spatial
data:
  crop_size_m: 256.0
  crop_px: 32
  max_cells: 4
"""


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("learn_e2e")
    scene = load_twin_scene(make_scene(root / "scene"))
    maps_a = make_maps(root / "scene", root / "maps_a.zarr")
    sites_b = np.vstack([default_sites(240, 200), [[60.0, 150.0]]])  # a fifth cell (id 141)
    maps_b = make_maps(root / "scene", root / "maps_b.zarr", sites_xy_m=sites_b)
    a = sample(scene, maps_a, SampleConfig(n=240, mode="drive", seed=1), root / "a.zarr")
    b = sample(scene, maps_b, SampleConfig(n=120, mode="drive", seed=2), root / "b.zarr")
    (root / "tiny.yaml").write_text(CONFIG)
    return root, a.url, b.url



def test_pretrain_eval_predict_finetune_through_the_cli(corpora):
    root, a, b = corpora
    run, ft = root / "run", root / "ft"
    out = learn_cli("pretrain", "--data", a, "--config", str(root / "tiny.yaml"), "--out", str(run))
    corpus = open_corpus(a)
    steps = 2 * (len(corpus.split_indices("spatial", "train")) // 16)  # 2 epochs, batch 16, drop_last
    assert f"trained {steps} steps (2 epochs" in out
    ckpt = load_checkpoint(run / "best.pt")
    scene_name = str(corpus.root["scenes"]["0"].attrs["name"])
    assert ckpt["cell_vocab"] == [f"{scene_name}:{c}" for c in (101, 111, 121, 131)]
    assert ckpt["configs"]["model"]["n_cells"] == 5  # 4 cells + padding row 0
    info = ckpt["data_info"]
    assert info["feature_names"] == ["rsrp_dbm", "rsrq_db", "rssi_dbm", "sinr_db"]
    assert np.allclose(info["normalization"]["feature_mean"], corpus.stats["feature_mean"])
    assert ckpt["configs"]["model"]["map_channels"] == len(info["normalization"]["map_channels"]) == 10
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert any(r["val_loss"] for r in rows) and all(math.isfinite(float(r["loss"])) for r in rows if r["loss"])

    # learn eval --ckpt: the harness's JSON with the density figures, and the pictures
    res = json.loads(learn_cli("eval", "--data", a, "--split", "spatial", "--ckpt", str(run / "best.pt"), "--json",
                          "--plot", str(root / "eval")).strip().splitlines()[-1])
    assert res["n"] == len(corpus.split_indices("spatial", "test")) and res["method"] == "posterior:best.pt"
    for key in ("nll", "coverage50", "coverage90", "refinement_gain_m", "median_m"):
        assert math.isfinite(res[key]), key
    assert 0 <= res["coverage50"] <= res["coverage90"] <= 1
    assert res["parts"]["unknown"]["n"] + res["parts"]["known"]["n"] == res["n"]
    pngs = sorted(p.name for p in (root / "eval").glob("*.png"))
    assert "error_cdf.png" in pngs and sum(p.startswith("posterior_") for p in pngs) == 8

    # learn predict: one row per test sample, truth known, heatmaps
    out = learn_cli("predict", "--ckpt", str(run / "best.pt"), "--data", a, "--split", "spatial",
               "--out", str(root / "pred.csv"), "--plot", str(root / "post"), "--n-plots", "2")
    pred = list(csv.DictReader((root / "pred.csv").read_text().splitlines()))
    assert len(pred) == res["n"] and f"{res['n']} predictions" in out
    err = [float(r["error_m"]) for r in pred]
    assert np.median(err) == pytest.approx(res["median_m"], rel=1e-4)  # same crops, same point as eval
    assert len(list((root / "post").glob("posterior_*.png"))) == 2

    # learn finetune on B (a fifth cell): shared cells keep their embeddings (lr 0), the new one is added
    learn_cli("finetune", "--init", str(run / "best.pt"), "--data", b, "--config", "finetune", "--out", str(ft),
         "--epochs", "1", "--lr", "0", "--num-workers", "0", "--split", "spatial")
    got = load_checkpoint(ft / "last.pt")
    assert got["cell_vocab"][-1] == f"{scene_name}:141" and got["configs"]["model"]["n_cells"] == 6
    assert got["configs"]["data"]["crop_size_m"] == 256.0 and got["configs"]["model"]["d_radio"] == 32
    emb_a, emb_b = ckpt["model"]["radio.tokens.cell.weight"], got["model"]["radio.tokens.cell.weight"]
    for j, key in enumerate(got["cell_vocab"]):
        if key in ckpt["cell_vocab"]:
            assert torch.equal(emb_b[j + 1], emb_a[ckpt["cell_vocab"].index(key) + 1]), key
    # the inputs keep the pretraining normalization (the weights were learned on it)
    assert got["data_info"]["normalization"] == info["normalization"]
    res_b = json.loads(learn_cli("eval", "--data", b, "--split", "spatial", "--ckpt", str(ft / "last.pt"),
                            "--json").strip().splitlines()[-1])
    assert math.isfinite(res_b["nll"])


def test_eval_inputs_use_the_checkpoint_statistics(corpora, tmp_path):
    """Zero-shot on another corpus: normalized with the training corpus's statistics, not its own."""
    root, a, b = corpora
    ds_a = CorpusDataset([a], config=DataConfig(crop_size_m=256.0, crop_px=32, max_cells=4))
    ckpt = {"configs": {"data": ds_a.config.to_dict()}, "cell_vocab": ds_a.cell_vocab.to_list(),
            "data_info": {**ds_a.state(), "feature_names": ds_a.feature_names}}
    loader = _corpus_loader(open_corpus(b), np.arange(4), ckpt, 4, 0)
    assert loader.dataset.normalization.feature_mean == ds_a.normalization.feature_mean
    assert loader.dataset.normalization.feature_mean != list(open_corpus(b).stats["feature_mean"])
    batch = next(iter(loader))
    raw = open_corpus(b).batch(np.arange(4), ["features", "mask"])
    m = raw["mask"].astype(bool)
    expected = (raw["features"][m] - np.asarray(ds_a.normalization.feature_mean)) / np.asarray(
        ds_a.normalization.feature_std)
    assert np.allclose(batch["features"].numpy()[m], expected, atol=1e-4)
    # the fifth cell of B is unknown to A's vocabulary: index 0
    assert set(batch["cell_index"][batch["mask"]].tolist()) <= set(range(5))


def test_features_align_by_name_and_nbiot_alias():
    take = align_features(["rsrp_dbm", "rsrq_db", "rssi_dbm", "sinr_db"],
                          ["rssi_dbm", "nsinr_db", "nrsrp_dbm", "nrsrq_db"])
    assert take.tolist() == [2, 3, 0, 1]
    with pytest.raises(InputError, match="missing snr_db"):
        align_features(["rsrp_dbm", "snr_db"], ["rsrp_dbm", "rsrq_db"], "x.zarr")


def test_training_crops_change_every_epoch(corpora, tmp_path):
    root, a, _ = corpora
    ds = CorpusDataset([a], np.arange(4)[None], DataConfig(crop_size_m=256.0, crop_px=32), training=True)
    first = ds[0]["crop_origin_m"].clone()
    ds.set_epoch(1)
    assert not torch.equal(first, ds[0]["crop_origin_m"])
    ds.set_epoch(0)
    assert torch.equal(first, ds[0]["crop_origin_m"])

    class Recording(CorpusDataset):
        epochs: list[int] = []

        def set_epoch(self, epoch: int) -> None:
            Recording.epochs.append(epoch)
            super().set_epoch(epoch)

    rec = Recording([a], [open_corpus(a).split_indices("spatial", "train")[:32]],
                    DataConfig(crop_size_m=256.0, crop_px=32, max_cells=4), training=True)
    info = {"n_features": 4, "n_cells": len(rec.cell_vocab), "map_channels": len(rec.map_channels),
            "cell_vocab": rec.cell_vocab.to_list(), "data_info": rec.state()}
    cfg = load_run_config(root / "tiny.yaml", {"train": {"epochs": 3, "num_workers": 0, "val_batches": 0}})
    train([], cfg, tmp_path / "run", datasets=(rec, None, info), progress=False)
    assert Recording.epochs == [0, 1, 2]


@pytest.mark.slow
def test_tiny_model_overfits_a_twin_sampled_corpus(corpora, tmp_path):
    """10 s on the idle 2-core CPU (60 s under load): 48 sequences of the tiny city, memorized on fixed
    (evaluation) crops, are then located with a median error below 20 m (measured 7 m; always
    answering the crop centre gives ~70 m)."""
    root, a, _ = corpora
    idx = [np.arange(48)]
    dcfg = DataConfig(crop_size_m=256.0, crop_px=32, max_cells=4)
    ds = CorpusDataset([a], idx, dcfg, training=False)  # fixed crops: the same inputs every epoch
    info = {"n_features": 4, "n_cells": len(ds.cell_vocab), "map_channels": len(ds.map_channels),
            "cell_vocab": ds.cell_vocab.to_list(), "data_info": {**ds.state(), "feature_names": ds.feature_names}}
    cfg = load_run_config(root / "tiny.yaml", {"train": {"epochs": 60, "num_workers": 0, "val_batches": 0,
                                                         "batch_size": 16, "lr": 3e-3, "log_every": 30}})
    train([], cfg, tmp_path / "run", datasets=(ds, None, info), progress=False)
    model, ck = load_posterior(tmp_path / "run" / "last.pt")
    ev = eval_dataset(a, idx[0], ck["configs"]["data"], data_info=ck["data_info"])
    loader = torch.utils.data.DataLoader(ev, batch_size=48)
    res = predict_batches(model, loader)
    err = np.linalg.norm(res["xy_m"] - res["truth_xy_m"], axis=1)
    centre = np.linalg.norm(np.stack([ev[i]["target_xy"].numpy() for i in range(48)]) - 0.5, axis=1) * 256.0
    assert np.median(centre) > 50.0  # the crops do not give the answer away
    assert np.median(err) < 20.0, np.median(err)


@pytest.mark.parametrize("switch", [{"use_map": False}, {"lambda_phys": 0.0}, {"top_k": 1}, {"coarse_head": "dense"},
                                    {"use_cell_embedding": False}])
def test_ablation_switches_train_and_predict_on_a_corpus(corpora, tmp_path, switch):
    """Seed 000's ablations (no map, no physics loss, one Gaussian, no cell embedding) run end to end."""
    root, a, _ = corpora
    cfg = load_run_config(root / "tiny.yaml", {"model": switch, "train": {"epochs": 1, "max_steps": 2,
                                                                          "num_workers": 0, "val_batches": 0}})
    train([a], cfg, tmp_path / "run", progress=False)
    model, ck = load_posterior(tmp_path / "run" / "last.pt")
    assert all(ck["configs"]["model"][k] == v for k, v in switch.items())
    assert (model.map is None) == (switch == {"use_map": False})
    # the switch changed what was trained: no cell-embedding weights, no physics term in the loss
    assert ("fine.cell_embedding.weight" in ck["model"]) == (switch != {"use_cell_embedding": False})
    rows = [r for r in csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()) if r["loss"]]
    assert rows and all(bool(r["phys"]) == (switch != {"lambda_phys": 0.0}) for r in rows)
    ev = eval_dataset(a, np.arange(6), ck["configs"]["data"], data_info=ck["data_info"])
    res = predict_batches(model, torch.utils.data.DataLoader(ev, batch_size=6), refine_cfg=None)
    assert np.isfinite(res["nll"]).all() and res["xy_m"].shape == (6, 2)
    if switch == {"top_k": 1}:
        assert (res["max_weight"] == 1.0).all()


@pytest.mark.slow
def test_torchrun_ddp_runs_the_same_command(corpora, tmp_path):
    """Two processes under torchrun (DDP over gloo on the CPU), the command of a single-process run (~15 s)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root, a, _ = corpora
    repo = Path(__file__).resolve().parents[1]
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc-per-node", "2", "-m", "cli.learn", "pretrain", "--data", a,
           "--config", str(root / "tiny.yaml"), "--max-steps", "4", "--num-workers", "0", "--out", str(tmp_path / "run")]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("trained 4 steps") == 1  # rank 0 reports
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["step"] == 4
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    assert rows[0]["step"] == "2"  # log_every 2, one writer (rank 0)
