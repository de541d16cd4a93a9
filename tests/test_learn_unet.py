"""The MLP+UNet baseline (seed 004 appendix C): radio slots, shapes, overfitting, training, eval and predict."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.learn import main
from learn.data import CorpusDataset, DataConfig, make_loader
from learn.heatmap import decode_argmax, heatmap_loss
from learn.heatmap_train import fit_baseline, load_baseline_config
from learn.registry import load_method
from learn.unet import MlpUNet, UNetConfig, UNetRunConfig, rank_feature_index, strongest_reports
from tests.test_learn_data import _write
from twin.errors import InputError

TINY = UNetConfig(image_px=32, base_channels=8, levels=3, rf_dim=32, rf_hidden=64, target_sigma_px=1.0)
TINY_DATA = DataConfig(crop_size_m=300.0, crop_px=32, max_cells=0)


@pytest.fixture
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def toy_url(tmp_path_factory):
    url = tmp_path_factory.mktemp("unet") / "toy.zarr"
    _write(url, n=48)
    return str(url)


def _hand_batch() -> dict[str, torch.Tensor]:
    """Two sequences of 6 events, 2 features; the last report is at t = 5."""
    t = torch.tensor([[0.0, 5, 5, 5, 5, 0], [1.0, 2, 2, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    feats = torch.tensor([[[9.0, 0], [1, 10], [3, 11], [2, 12], [3.5, 13], [99, 99]],
                          [[5.0, 1], [-1, 2], [0, 3], [0, 0], [0, 0], [0, 0]]])
    valid = mask[..., None].expand(2, 6, 2).clone()
    valid[0, 2, 0] = False                       # event 2 has no ranking feature: ranked after the others
    cells = torch.tensor([[1, 2, 3, 4, 4, 0], [1, 2, 3, 0, 0, 0]])  # events 3 and 4 share cell 4
    bs_xy = torch.rand(2, 6, 2, generator=torch.Generator().manual_seed(0))
    return {"time_s": t, "mask": mask, "features": feats * valid, "feature_valid": valid, "cell_index": cells,
            "bs_xy": bs_xy, "bs_valid": mask.clone()}


def test_the_radio_slots_are_the_strongest_cells_of_the_last_report(one_thread):
    b = _hand_batch()
    s = strongest_reports(b, 3, rank_feature=0)
    assert s.shape == (2, 3, 2 * 2 + 4)
    # Sequence 0, last report (t = 5): events 1-4; cell 4's stronger event (3.5) keeps the slot, event 2
    # (no ranking feature) comes last; the first event (t = 0, strongest overall) is not in the last report.
    assert s[0, :, 0].tolist() == [3.5, 1.0, 0.0] and s[0, :, 1].tolist() == [13.0, 10.0, 11.0]
    assert s[0, :, 2].tolist() == [1.0, 1.0, 0.0]                        # feature_valid of the ranking feature
    torch.testing.assert_close(s[0, 0, 4:6], b["bs_xy"][0, 4])
    assert s[0, :, -1].tolist() == [1.0, 1.0, 1.0]                       # present
    # Sequence 1: two events in its last report (t = 2): the third slot is empty.
    assert s[1, :, 0].tolist() == [0.0, -1.0, 0.0] and s[1, :, -1].tolist() == [1.0, 1.0, 0.0]
    assert not s[1, 2].any()
    # Ranking by the second feature instead.
    assert strongest_reports(b, 3, rank_feature=1)[0, :, 1].tolist() == [13.0, 11.0, 10.0]
    assert rank_feature_index(["rsrp_dbm", "rsrq_db", "rssi_dbm", "sinr_db"]) == 2   # RSSI first (seed 004)
    assert rank_feature_index(["nsinr_db", "nrsrp_dbm"]) == 1 and rank_feature_index(["a", "b"]) == 0


def test_shapes_padding_and_the_seed_sizes(toy_url, one_thread):
    ds = CorpusDataset([toy_url], config=TINY_DATA)
    cfg = TINY.with_data(["rsrp_dbm", "sinr_db"], len(ds.map_channels), 32)
    assert cfg.rank_feature == 0 and cfg.n_features == 2
    b = next(iter(make_loader(ds, batch_size=4)))
    model = MlpUNet(cfg).eval()
    with torch.no_grad():
        out, loss = model(b)
        out_t, loss_t = model(b, b["target_xy"])
    assert out.logits.shape == (4, 32, 32) and loss is None and torch.isfinite(out.logits).all()
    assert float(loss_t) == pytest.approx(float(heatmap_loss(out.logits, b["target_xy"], 1.0)), rel=1e-5)
    xy_m = b["crop_origin_m"].double() + out.xy.double() * b["crop_size_m"].double()[:, None]
    assert torch.allclose(xy_m, decode_argmax(out.logits, b["crop_origin_m"], b["crop_size_m"]))
    assert 0.001 < float(torch.sigmoid(out.logits).mean()) < 0.05        # the bias starts at the target's mean
    # Events outside the radio slots (padding, earlier reports) do not change the output.
    b2 = dict(b)
    b2["features"] = torch.where(b["mask"][..., None], b["features"], 123.0)
    with torch.no_grad():
        assert torch.equal(model(b2)[0].logits, out.logits)
    with pytest.raises(InputError, match="levels: 1 must be >= 2"):
        UNetConfig(levels=1)
    with pytest.raises(InputError, match=r"crop_px: 40 is not a multiple of 2\^\(model.levels - 1\) = 16"):
        UNetRunConfig(model=UNetConfig(levels=5, image_px=224), data=DataConfig(crop_px=40))
    # The full preset is seed 004's: 224 px, 64 ... 1024 channels, a 14 x 14 bottleneck, MLP 256-1024-256.
    full = load_baseline_config("mlp-unet", "full")
    fcfg = full.model.with_data(["rssi_dbm", "nsinr_db", "nrsrp_dbm", "nrsrq_db"], 0, full.data.crop_px)
    assert fcfg.channels == [64, 128, 256, 512, 1024] and full.data.crop_px // 2 ** (fcfg.levels - 1) == 14
    with torch.device("meta"):
        net = MlpUNet(fcfg)
    widths = [m.out_features for m in net.rf_mlp if isinstance(m, torch.nn.Linear)]
    assert widths == [256, 1024, 256] and net.rf_mlp[0].in_features == 3 * (2 * 4 + 4)


def test_a_tiny_unet_overfits_a_tiny_corpus(toy_url, one_thread):
    """About 2 s on the shared 2-core CPU. The error falls far below the crop centre's."""
    ds = CorpusDataset([toy_url], [np.arange(8)], config=TINY_DATA)
    cfg = TINY.with_data(["rsrp_dbm", "sinr_db"], len(ds.map_channels), 32)
    b = next(iter(make_loader(ds, batch_size=8)))
    torch.manual_seed(0)
    model = MlpUNet(cfg)
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    for _ in range(30):
        _, loss = model(b, b["target_xy"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        xy = decode_argmax(model(b)[0].logits, b["crop_origin_m"], b["crop_size_m"])
    err = torch.linalg.norm(xy - b["position_xy_m"].double(), dim=1)
    centre = torch.linalg.norm(b["crop_origin_m"].double() + 150.0 - b["position_xy_m"].double(), dim=1)
    assert float(centre.mean()) > 40.0
    assert float(err.mean()) < 0.25 * float(centre.mean()), (err, centre)
    assert float(err.max()) < 300.0 / 32 * 1.5                             # every sample within ~1 pixel


def test_fit_eval_and_predict_through_the_cli(toy_url, tmp_path, one_thread):
    out = tmp_path / "u"
    cfg = UNetRunConfig(model=TINY, train=load_baseline_config("mlp-unet", "small").train, data=TINY_DATA)
    summary = fit_baseline("mlp-unet", toy_url, "random", out, cfg, epochs=2, batch_size=8, progress=False)
    n_train = len(np.flatnonzero(np.arange(48) % 5 != 0))
    assert summary.steps == 2 * (n_train // 8) and (out / "curve.png").stat().st_size > 1000
    ckpt = torch.load(out / "best.pt", weights_only=True)
    assert ckpt["kind"] == "mlp-unet" and ckpt["configs"]["model"]["image_px"] == 32
    assert ckpt["configs"]["model"]["base_channels"] == 8 and ckpt["configs"]["model"]["rank_feature"] == 0
    rows = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    assert "bce" in rows[0] and all(float(r["bce"]) > 0 for r in rows if r["bce"])
    method = load_method(out / "best.pt")
    assert method.name == "mlp-unet"
    runner = CliRunner()
    res = runner.invoke(main, ["eval", "--data", toy_url, "--split", "random", "--ckpt", str(out / "best.pt"),
                               "--json"])
    assert res.exit_code == 0, res.output
    js = json.loads(res.output.strip().splitlines()[-1])
    assert js["method"] == "mlp-unet" and js["n"] == 10 and js["prior"] == "coarse"
    res = runner.invoke(main, ["predict", "--ckpt", str(out / "best.pt"), "--data", toy_url, "--split", "random",
                               "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    pred = list(csv.DictReader((tmp_path / "p.csv").read_text().splitlines()))
    assert len(pred) == 10 and {r["prior"] for r in pred} == {"coarse"}
    err = np.array([float(r["error_m"]) for r in pred])
    assert np.mean(err) == pytest.approx(js["mean_m"], rel=1e-6)          # same crops, same estimates as eval
    assert all(r["std_m"] == "" for r in pred)                            # a point estimate: no spread
    # The command trains it by name; the domain-adversarial switch is the posterior's only.
    res = runner.invoke(main, ["fit-baseline", "mlp-unet", "--data", toy_url, "--out", str(out)])
    assert res.exit_code == 2 and "exists" in res.output
    with pytest.raises(InputError, match="domain-adversarial training is for the posterior"):
        fit_baseline("mlp-unet", toy_url, "random", tmp_path / "da", cfg.__class__(
            model=TINY, train=cfg.train.__class__(domain_adversarial_lambda=0.1), data=TINY_DATA), progress=False)
    assert "mlp-unet" in runner.invoke(main, ["fit-baseline", "--help"]).output
