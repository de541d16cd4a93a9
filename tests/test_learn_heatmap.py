"""The heatmap baseline: unpatching, targets and decoding, overfitting, checkpoint, CLI, full size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.learn import main
from learn.data import CorpusDataset, DataConfig, make_loader
from learn.heatmap import (
    HeatmapConfig,
    HeatmapNet,
    decode_argmax,
    gaussian_targets,
    heatmap_loss,
    load_init_weights,
    unpatch,
)
from learn.heatmap_train import HeatmapRunConfig, fit_heatmap, load_heatmap_config
from learn.registry import load_method
from tests.test_learn_data import _write
from twin.errors import CheckpointError

TINY = HeatmapConfig(image_px=32, patch_px=8, dim=64, depth=2, heads=4, radio_hidden=64, target_sigma_px=1.0)
TINY_DATA = DataConfig(crop_size_m=300.0, crop_px=32, max_cells=0)


@pytest.fixture
def one_thread():
    # The test machine's 2 cores are shared: a single thread is several times faster here.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def toy_url(tmp_path_factory):
    url = tmp_path_factory.mktemp("heat") / "toy.zarr"
    _write(url, n=48)
    return str(url)


def test_unpatch_is_appendix_g():
    # Token (i, j) holds patch row i, column j as (c, p, p) values.
    b, h, c, p = 2, 3, 2, 4
    img = torch.arange(b * c * h * p * h * p, dtype=torch.float32).reshape(b, c, h * p, h * p)
    tokens = img.reshape(b, c, h, p, h, p).permute(0, 2, 4, 1, 3, 5).reshape(b, h * h, c * p * p)
    assert torch.equal(unpatch(tokens, c, p), img)
    assert torch.equal(unpatch(tokens, c, p)[0, 1, p:2 * p, 2 * p:], tokens[0, 1 * h + 2].reshape(c, p, p)[1])
    with pytest.raises(ValueError, match="square"):
        unpatch(tokens[:, :5], c, p)


def test_targets_and_argmax_follow_the_crop_convention():
    px = 20
    target = torch.tensor([[0.125, 0.875], [0.52, 0.31]])     # crop units, x east, y north
    g = gaussian_targets(target, px, 1.0)
    r, c = np.unravel_index(g[0].argmax().item(), (px, px))
    assert (r, c) == (17, 2)                                     # row grows north
    assert float(g[0, 17, 2]) == pytest.approx(1.0)             # pixel centre (2.5, 17.5) = truth
    origin = torch.tensor([[100.0, -50.0], [0.0, 0.0]])
    size = torch.tensor([600.0, 600.0])
    xy = decode_argmax(torch.log(g / (1 - g + 1e-9)), origin, size)
    np.testing.assert_allclose(xy[0].numpy(), [100 + 0.125 * 600, -50 + 0.875 * 600])
    # Off-centre truth: the argmax pixel's centre lies within half a pixel diagonal.
    assert float(torch.linalg.norm(xy[1] - target[1].double() * 600)) <= 600 / px * 0.71
    # BCE is lowest for logits equal to the target's log-odds.
    t = g.clamp(1e-6, 1 - 1e-6)
    best = heatmap_loss(torch.log(t / (1 - t)), target, 1.0)
    assert float(best) < float(heatmap_loss(torch.zeros(2, px, px), target, 1.0))


def test_small_model_forward_shape_and_prior(toy_url):
    ds = CorpusDataset([toy_url], config=TINY_DATA)
    cfg = HeatmapConfig(**{**TINY.to_dict(), "n_features": 2, "n_map_channels": len(ds.map_channels)})
    b = next(iter(make_loader(ds, batch_size=4)))
    model = HeatmapNet(cfg).eval()
    with torch.no_grad():
        out, loss = model(b)
        logits = out.logits
    assert logits.shape == (4, 32, 32) and torch.isfinite(logits).all() and loss is None
    # The training loop's interface: the output's point estimate is the argmax pixel, the loss the mean BCE.
    with torch.no_grad():
        out_t, loss_t = model(b, b["target_xy"])
    xy_m = b["crop_origin_m"].double() + out.xy.double() * b["crop_size_m"].double()[:, None]
    assert torch.allclose(xy_m, decode_argmax(logits, b["crop_origin_m"], b["crop_size_m"]))
    assert float(loss_t) == pytest.approx(float(heatmap_loss(logits, b["target_xy"], cfg.target_sigma_px)), rel=1e-5)
    assert out_t.parts["bce"].shape == (4,)
    # At initialization the mean probability sits near the target's mean value, not 0.5.
    assert 0.001 < float(torch.sigmoid(logits).mean()) < 0.05
    # Padding events do not change the output.
    b2 = dict(b)
    b2["features"] = torch.where(b["mask"][..., None], b["features"], 123.0)
    with torch.no_grad():
        assert torch.allclose(model(b2)[0].logits, logits, atol=1e-5)


@pytest.mark.slow
def test_heatmap_overfits_a_tiny_set(toy_url, one_thread):
    ds = CorpusDataset([toy_url], [np.arange(8)], config=TINY_DATA)
    cfg = HeatmapConfig(**{**TINY.to_dict(), "n_features": 2, "n_map_channels": len(ds.map_channels)})
    b = next(iter(make_loader(ds, batch_size=8)))
    torch.manual_seed(0)
    model = HeatmapNet(cfg)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    first = None
    for _ in range(80):
        _, loss = model(b, b["target_xy"])
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        xy = decode_argmax(model(b)[0].logits, b["crop_origin_m"], b["crop_size_m"])
    err = torch.linalg.norm(xy - b["position_xy_m"].double(), dim=1)
    pixel = 300.0 / 32
    assert float(loss.detach()) < 0.6 * first
    assert (err <= pixel * 0.71 + 1e-3).all(), err            # every sample at its truth pixel


def test_fit_checkpoint_eval_and_cli(toy_url, tmp_path, one_thread):
    out = tmp_path / "h"
    cfg = HeatmapRunConfig(model=TINY, train=load_heatmap_config("small").train, data=TINY_DATA)
    summary = fit_heatmap(toy_url, "random", out, config=cfg, epochs=2, batch_size=8, progress=False)
    assert (out / "best.pt").exists() and (out / "curve.png").stat().st_size > 1000
    assert summary.path == str(out / "best.pt")
    assert summary.steps == 2 * (len(np.flatnonzero(np.arange(48) % 5 != 0)) // 8)
    ckpt = torch.load(out / "best.pt", weights_only=True)
    assert ckpt["kind"] == "heatmap" and ckpt["schema_version"] == 2
    assert ckpt["cell_vocab"] == ["toy:7", "toy:11", "toy:42"]
    assert ckpt["configs"]["data"]["crop_px"] == 32 and ckpt["configs"]["model"]["image_px"] == 32
    # The loop's history, one entry per epoch; the toy split has no val part: best.pt is the last epoch.
    hist = torch.load(out / "last.pt", weights_only=True)["history"]
    assert hist["epoch"] == [1.0, 2.0] and len(hist["train_loss"]) == 2 and np.isnan(hist["val_mean_m"]).all()
    assert summary.best_val_mean_m is None and ckpt["epoch"] == summary.best_epoch == 2
    method = load_method(out / "best.pt")
    pred = method.predict(method.dataset(toy_url, np.arange(3)).urls[0], np.arange(3))
    assert pred.xy_m.shape == (3, 2) and np.isfinite(pred.xy_m).all()
    runner = CliRunner()
    res = runner.invoke(main, ["eval", "--data", toy_url, "--split", "random", "--ckpt", str(out / "best.pt"),
                               "--json"])
    assert res.exit_code == 0, res.output
    js = json.loads(res.output.strip().splitlines()[-1])
    assert js["method"] == "heatmap" and js["n"] == 10 and js["mean_m"] > 0
    # The command refuses to overwrite a run.
    res = runner.invoke(main, ["fit-baseline", "heatmap", "--data", toy_url, "--out", str(out)])
    assert res.exit_code == 2 and "exists" in res.output
    assert "Example" in runner.invoke(main, ["fit-baseline", "--help"]).output
    # A heatmap checkpoint of the old layout (schema 1) is refused by every reader, naming the file.
    old = tmp_path / "old.pt"
    torch.save({**ckpt, "schema_version": 1}, old)
    for read in (load_method, lambda p: load_init_weights(HeatmapNet(ckpt_model(ckpt)), p)):
        with pytest.raises(CheckpointError, match=r"old\.pt.*schema_version 1"):
            read(old)


def ckpt_model(ckpt):
    return HeatmapConfig(**ckpt["configs"]["model"])


def test_init_weights(tmp_path):
    model = HeatmapNet(TINY)
    other = HeatmapNet(TINY)
    torch.save(other.state_dict(), tmp_path / "w.pt")
    loaded, total = load_init_weights(model, tmp_path / "w.pt")
    assert loaded == total
    assert torch.equal(model.patch_pos, other.patch_pos)
    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="no tensor matches"):
        load_init_weights(model, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="no such"):
        load_init_weights(model, tmp_path / "absent.pt")


def test_full_config_is_dinov2_large_sized():
    full = load_heatmap_config("full")
    cfg = HeatmapConfig(**{**full.model.to_dict(), "n_features": 4, "n_map_channels": 10})
    assert full.data.crop_px == 224 and full.data.crop_size_m == 600.0
    assert cfg.grid_patches == 16 and cfg.image_px == 224
    with torch.device("meta"):
        model = HeatmapNet(cfg)
    n = sum(p.numel() for p in model.parameters())
    blocks = sum(p.numel() for p in model.blocks.parameters())
    # DINOv2-L/14: 24 blocks of width 1024 = 302 M parameters.
    assert blocks == 24 * (4 * 1024 * 1024 + 4 * 1024 + 2 * 1024 * 4096 + 4096 + 1024 + 4 * 1024)
    assert 3.0e8 < n < 3.2e8
    assert model.project.out_features == 14 * 14 * 3
