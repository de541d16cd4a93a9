"""The likelihood prior in the coarse logits (``model.coarse_prior: likelihood``, ``model.fine_anchor``).

On a corpus written by the real ``twin sample`` path over the tiny city (tests/data/tiny_city):
the pooled prior is map matching's posterior integrated over each coarse cell; an untrained
model with the switches answers map matching's pixel (crop pixels = scene pixels, road
prior, the crop as search square); the switch changes the computation; a checkpoint
round-trips through ``learn eval`` and ``learn predict``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

import cli.learn  # noqa: F401  (registers pretrain, eval, predict)
from learn.baselines import MapMatchBaseline
from learn.checkpoint import load_checkpoint
from learn.data import CorpusDataset, DataConfig, collate
from learn.heads import OFF_PRIOR_LOGP, cell_of, likelihood_prior
from learn.mapmatch import corpus_events, scene_matcher
from learn.model import LIK_SCALE_RATE, ModelConfig
from learn.train import RunConfig, build_model, load_run_config
from tests.learn_batch import (
    TINY_LIKELIHOOD_RUN_YAML,
    TINY_MODEL_YAML,
    assert_eval_predict_round_trip,
    learn_cli,
    tiny_city_corpus,
)
from twin.corpus.store import open_corpus
from twin.errors import InputError

SWITCHES = "  coarse_head: dense\n  coarse_prior: likelihood\n  fine_anchor: likelihood\n"
TINY = TINY_MODEL_YAML + SWITCHES + TINY_LIKELIHOOD_RUN_YAML
PX = 16  # crop pixels per side in the pixel-exact tests (grid_size 8: 2 x 2 pixels per cell)


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    return tiny_city_corpus(tmp_path_factory.mktemp("coarse_prior"), TINY)


def _aligned(url: str, n: int = 12) -> tuple[CorpusDataset, dict[str, torch.Tensor], np.ndarray, float]:
    """A batch of ``n`` sequences, each on a crop whose pixels are the scene's and which holds its truth:
    the dataset, the batch, the crops' first scene pixel ``(n, 2)`` (row, column) and their side [m]."""
    corpus = open_corpus(url)
    grid = corpus.scene(0).grid
    assert min(grid.height, grid.width) >= PX
    truth = corpus.batch(np.arange(n), ["position_xy_m"])["position_xy_m"].astype(np.float64)
    j0 = np.clip(np.floor((truth[:, 0] - grid.x0_m) / grid.cell_size_m).astype(int) - PX // 2 + 1, 0, grid.width - PX)
    i0 = np.clip(np.floor((truth[:, 1] - grid.y0_m) / grid.cell_size_m).astype(int) - PX // 2 + 1, 0, grid.height - PX)
    origin = np.stack([grid.x0_m + j0 * grid.cell_size_m, grid.y0_m + i0 * grid.cell_size_m], axis=1)
    size = PX * grid.cell_size_m
    ds = CorpusDataset([url], [np.arange(n)], DataConfig(crop_size_m=size, crop_px=PX, max_cells=4, likelihood=True),
                       crop_origins_m=origin)
    return ds, collate([ds[i] for i in range(n)]), np.stack([i0, j0], axis=1), size


def _model(ds: CorpusDataset, **switches) -> torch.nn.Module:
    cfg = ModelConfig(**{**dict(d_radio=32, radio_layers=1, radio_heads=4, d_map=32, map_layers=1, map_heads=4,
                                patch_size=8, d_fusion=32, fusion_heads=4, grid_size=8, top_k=3, d_cell=8,
                                head_hidden=64, coarse_head="dense"), **switches})
    info = {"n_features": 4, "n_cells": len(ds.cell_vocab), "map_channels": len(ds.map_channels)}
    torch.manual_seed(0)
    return build_model(cfg, info, DataConfig(crop_size_m=ds.config.crop_size_m, crop_px=PX, likelihood=True)).eval()


def test_untrained_model_answers_map_matching(city):
    """Zero correction: logits = map matching's log-posterior pooled per cell (computed here from
    MapMatcher.energy on the scene grid with its road prior), and the MAP component is map matching's
    pixel inside the crop."""
    _, url = city
    n = 12
    ds, batch, first, size = _aligned(url, n)
    origin = batch["crop_origin_m"].double().numpy()
    corpus = open_corpus(url)
    sigma = MapMatchBaseline().sigma_of(corpus)
    matcher = scene_matcher(corpus, 0, sigma, pixel_prior="road")  # map matching's searched pixels
    full = scene_matcher(corpus, 0, sigma, pixel_prior="none")
    grid = full.grid
    events, _, _ = corpus_events(corpus, np.arange(n))
    region = ((matcher.x_m[None] >= origin[:, :1]) & (matcher.x_m[None] <= origin[:, :1] + size)
              & (matcher.y_m[None] >= origin[:, 1:]) & (matcher.y_m[None] <= origin[:, 1:] + size))
    answer = matcher.match(events, region=region).xy_m  # map matching inside each crop [m]
    on_road = np.zeros(grid.height * grid.width, bool)
    on_road[matcher.pixels] = True
    on_road = on_road.reshape(grid.shape)
    model = _model(ds, coarse_prior="likelihood", fine_anchor="likelihood")
    with torch.no_grad():
        out = model(batch)[0]
    g, r = 8, PX // 8
    agree = 0
    for k in range(n):
        win = np.s_[first[k][0]:first[k][0] + PX, first[k][1]:first[k][1] + PX]
        energy, road = full.energy([events[k]])[0][0].reshape(grid.shape)[win], on_road[win]
        q = -0.5 * np.maximum(energy, 0.0) + np.where(road, 0.0, OFF_PRIOR_LOGP)  # pixel log-posterior
        per_cell = q.reshape(g, r, g, r).transpose(0, 2, 1, 3).reshape(g * g, r * r)
        want = logsumexp(per_cell, axis=1) - np.log(r * r)
        np.testing.assert_allclose(out.logits[k].numpy(), want, rtol=1e-5, atol=1e-2)
        mm_cell = int(cell_of(torch.tensor((answer[k] - origin[k]) / size), g))
        best = per_cell.max(1)
        assert best[mm_cell] == pytest.approx(best.max(), abs=1e-3)  # map matching's pixel is q's best
        c = int(out.logits[k].argmax())
        # the pooled argmax is map matching's cell unless another cell's best pixel is within log(r^2) of it
        assert best[c] >= best.max() - np.log(r * r) - 1e-3
        # the MAP component is the best pixel of its cell
        p = int(per_cell[c].argmax())
        centre = np.array([(c % g) * r + p % r + 0.5, (c // g) * r + p // r + 0.5]) / PX
        np.testing.assert_allclose(out.mixture.map_component()[k].numpy(), centre, atol=1e-6)
        if c == mm_cell:  # then it is map matching's answer
            agree += 1
            np.testing.assert_allclose(out.mixture.map_component()[k].numpy() * size + origin[k], answer[k], atol=1e-3)
    assert agree >= n // 2, agree
    # without the anchor the component sits at the cell centre, off map matching's pixel
    with torch.no_grad():
        centred = _model(ds, coarse_prior="likelihood")(batch)[0]
    torch.testing.assert_close(centred.logits, out.logits)
    gap = (centred.mixture.map_component() - out.mixture.map_component()).norm(dim=1) * size
    assert float(gap.max()) > 0.5 * grid.cell_size_m


def test_switch_changes_the_computation(city):
    root, url = city
    ds, batch, _, _ = _aligned(url, 6)
    off, on = _model(ds), _model(ds, coarse_prior="likelihood")
    with torch.no_grad():
        a, b = off(batch)[0].logits, on(batch)[0].logits
        assert not torch.allclose(a, b)
        moved = dict(batch, lik_loglik=torch.flip(batch["lik_loglik"], dims=(-1,)))
        assert not torch.allclose(b, on(moved)[0].logits)  # the log-likelihood reaches the logits
        assert torch.allclose(a, off(moved)[0].logits)  # and only through the switch
        with pytest.raises(InputError, match="lik_loglik"):
            on({k: v for k, v in batch.items() if k != "lik_loglik"})
    # the learned tempering scales the likelihood: at 1/2 the pooled prior is the tempered one
    with torch.no_grad():
        on.lik_log_scale.fill_(np.log(0.5) / LIK_SCALE_RATE)
        half = on(batch)[0].logits
    want, _ = likelihood_prior(batch["lik_loglik"] * 0.5, batch["lik_allowed"], 8)
    torch.testing.assert_close(half, want, rtol=1e-5, atol=1e-4)
    assert on.lik_log_scale.requires_grad and "lik_log_scale" in dict(on.named_parameters())
    with pytest.raises(InputError, match="data.likelihood"):
        RunConfig(model=ModelConfig(coarse_prior="likelihood"), data=DataConfig())
    with pytest.raises(InputError, match="grid_size"):
        RunConfig(model=ModelConfig(coarse_prior="likelihood", grid_size=32, patch_size=8),
                  data=DataConfig(likelihood=True, crop_px=48))
    with pytest.raises(InputError, match="fine_anchor"):
        ModelConfig(fine_anchor="likelihood")
    with pytest.raises(InputError, match="coarse_prior"):
        ModelConfig(coarse_prior="physics")


def test_pooled_prior_integrates_the_likelihood_over_each_cell():
    """Two cells hold the same best pixel value; the one with more likely pixels gets more mass, and
    the anchor is each cell's best pixel (crop units from the cell centre)."""
    ll = torch.full((1, 4, 4), -50.0)
    ll[0, 0, 0] = 0.0            # cell (0, 0): one good pixel, south-west corner
    ll[0, 2, 3] = ll[0, 3, 3] = 0.0  # cell (1, 1): two good pixels, east column
    allowed = torch.ones(1, 4, 4, dtype=torch.bool)
    cell_ll, anchor = likelihood_prior(ll, allowed, 2)
    assert int(cell_ll.argmax()) == 3 and float(cell_ll[0, 3] - cell_ll[0, 0]) == pytest.approx(np.log(2), abs=1e-4)
    torch.testing.assert_close(anchor[0, 0], torch.tensor([-0.125, -0.125]))
    assert float(anchor[0, 3, 0]) == pytest.approx(0.125)
    off_road = likelihood_prior(ll, allowed & (ll > -1), 2)[0]  # only the good pixels searched
    assert float(off_road[0, 1]) == pytest.approx(OFF_PRIOR_LOGP - 50.0, abs=1e-3)



def test_checkpoint_round_trips_eval_and_predict(city):
    root, url = city
    run = root / "run"
    learn_cli("pretrain", "--data", url, "--config", str(root / "tiny.yaml"), "--out", str(run))
    ckpt = load_checkpoint(run / "best.pt")
    model_cfg = ckpt["configs"]["model"]
    assert model_cfg["coarse_prior"] == "likelihood" and model_cfg["fine_anchor"] == "likelihood"
    assert "lik_log_scale" in ckpt["model"]
    cfg = load_run_config(root / "tiny.yaml")
    assert dataclasses.asdict(cfg.model)["coarse_prior"] == "likelihood"
    assert_eval_predict_round_trip(run / "best.pt", url, root / "pred.csv")
