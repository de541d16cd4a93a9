"""The posterior model's pieces: shapes, masks, invariances (Props. 1-2), heads, losses, refinement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learn.equivariant import E2MapViT, group_tables, transform
from learn.heads import Mixture, cell_centers, cell_of
from learn.losses import coarse_loss, mixture_nll, physics_energy, sample_maps
from learn.model import ModelConfig, PosteriorModel
from learn.refine import RefineConfig, energy, refine
from tests.learn_batch import synthetic_batch
from twin.geo import Grid

TINY = dict(n_features=3, n_cells=10, n_beams=8, map_channels=2, crop_px=32, d_radio=32, radio_layers=2,
            radio_heads=4, n_inducing=4, d_map=32, map_layers=2, map_heads=4, patch_size=8, d_fusion=32,
            fusion_heads=4, grid_size=8, top_k=4, d_cell=8, head_hidden=32)


def tiny_model(**kw) -> PosteriorModel:
    torch.manual_seed(0)
    return PosteriorModel(ModelConfig(**{**TINY, **kw})).eval()


def test_forward_shapes_and_loss_backward():
    model = tiny_model()
    batch = synthetic_batch()
    out, loss = model(batch, batch["target_xy"])
    assert out.logits.shape == (4, 64)
    assert out.mixture.means.shape == (4, 4, 2) and out.mixture.sigmas.shape == (4, 4, 2)
    assert torch.allclose(out.mixture.weights.sum(1), torch.ones(4))
    assert set(out.parts) == {"coarse", "fine", "phys"}
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    _, none = model(batch)
    assert none is None


def test_padding_is_ignored():
    model = tiny_model()
    batch = synthetic_batch()
    out, _ = model(batch)
    other = {k: v.clone() for k, v in batch.items()}
    pad = ~batch["mask"]  # the first sequence's last two events are padding
    other["features"][pad] = 123.0
    other["time_s"][pad] = -1e6
    other["cell_index"][pad] = 7
    other["bs_xy"][pad] = 9.0
    out2, _ = model(other)
    assert torch.allclose(out.logits, out2.logits, atol=1e-5)


@pytest.mark.parametrize("encoder", ["transformer", "set_transformer"])
def test_radio_encoder_permutation_invariant(encoder):
    model = tiny_model(radio_encoder=encoder)
    batch = synthetic_batch()
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    permuted = {k: (v[:, perm] if k in {"cell_index", "beam_index", "time_s", "features", "feature_valid",
                                        "mask", "bs_xy", "bs_valid", "event_slot"} else v)
                for k, v in batch.items()}
    z = model.radio(batch)
    zp = model.radio(permuted)
    assert torch.allclose(z, zp, atol=1e-5)
    # and the encoder does depend on the content (the test could fail)
    changed = {**batch, "features": batch["features"] + 1.0}
    assert not torch.allclose(z, model.radio(changed), atol=1e-3)


def test_time_affine_invariance():
    model = tiny_model()
    batch = synthetic_batch()
    z = model.radio(batch)
    for a, b in [(3.0, -50.0), (0.01, 1e4)]:
        z2 = model.radio({**batch, "time_s": a * batch["time_s"].double() + b})
        assert torch.allclose(z, z2, atol=1e-4), (a, b)
    warped = batch["time_s"] ** 2 / 100  # not affine: must change z
    assert not torch.allclose(z, model.radio({**batch, "time_s": warped}), atol=1e-4)


def test_mixture_nll_equals_direct_density():
    g = torch.Generator().manual_seed(1)
    w = torch.softmax(torch.randn(3, 4, generator=g), -1)
    mu = torch.rand(3, 4, 2, generator=g)
    sd = torch.rand(3, 4, 2, generator=g) * 0.1 + 0.01
    mix = Mixture(w, mu, sd, torch.zeros(3, 4, dtype=torch.long))
    y = torch.rand(3, 2, generator=g)
    direct = []
    for i in range(3):
        p = 0.0
        for k in range(4):
            dens = 1.0
            for d in range(2):
                s, m = sd[i, k, d].item(), mu[i, k, d].item()
                dens *= math.exp(-0.5 * ((y[i, d].item() - m) / s) ** 2) / (math.sqrt(2 * math.pi) * s)
            p += w[i, k].item() * dens
        direct.append(-math.log(p))
    assert np.allclose(mixture_nll(mix, y).numpy(), direct, rtol=1e-5)
    # far from every component LogSumExp stays finite where the direct sum underflows
    assert torch.isfinite(mixture_nll(mix, torch.full((3, 2), 50.0))).all()
    # Jensen surrogate upper-bounds the exact NLL
    log_n = torch.stack([Mixture(torch.ones(3, 1), mu[:, k:k + 1], sd[:, k:k + 1], mix.cells[:, :1]).log_prob(y)
                         for k in range(4)], 1)
    assert (-(w * log_n).sum(1) >= mixture_nll(mix, y) - 1e-6).all()


def test_mixture_moments_and_hdr():
    g = torch.Generator().manual_seed(2)
    w = torch.tensor([[0.7, 0.3]])
    mu = torch.tensor([[[0.2, 0.3], [0.6, 0.5]]])
    sd = torch.tensor([[[0.05, 0.02], [0.03, 0.04]]])
    mix = Mixture(w, mu, sd, torch.zeros(1, 2, dtype=torch.long))
    mean = mix.mean()
    assert torch.allclose(mean, torch.tensor([[0.32, 0.36]]))
    within, between = mix.covariance()
    draws = mix.sample(200000, g)[0]
    emp = torch.cov(draws.T)
    assert torch.allclose(within + between, emp, atol=2e-4)
    assert torch.allclose(mix.map_component(), mu[:, 0])
    # a single Gaussian: the HDR of mass a is the ellipse of Mahalanobis radius sqrt(-2 log(1 - a))
    one = Mixture(torch.ones(1, 1), mu[:, :1], sd[:, :1], mix.cells[:, :1])
    r50 = math.sqrt(-2 * math.log(0.5))
    at = mu[0, 0] + torch.tensor([r50 * 0.05, 0.0])
    level = one.hdr_level(at[None], n=200000, generator=g)
    assert abs(level.item() - 0.5) < 0.01


def test_cells_and_coarse_loss():
    centres = cell_centers(4)
    assert torch.allclose(centres[0], torch.tensor([0.125, 0.125]))
    assert torch.allclose(centres[4 * 1 + 2], torch.tensor([0.625, 0.375]))  # row 1 (north), column 2 (east)
    assert cell_of(torch.tensor([[0.625, 0.375], [1.0, 1.0]]), 4).tolist() == [6, 15]
    logits = torch.zeros(1, 16)
    logits[0, 6] = 10.0
    assert coarse_loss(logits, torch.tensor([[0.6, 0.3]]), 4).item() < 1e-3


def test_grid_sample_lookup_matches_bilinear_and_grid():
    g = torch.Generator().manual_seed(3)
    s = 16
    values = torch.randn(1, 2, 1, s, s, generator=g, dtype=torch.float64)
    xy = torch.rand(1, 50, 2, generator=g, dtype=torch.float64)
    xy[0, :3] = torch.tensor([[0.0, 0.0], [1.0, 0.5], [0.01, 0.99]], dtype=torch.float64)  # edges
    got = sample_maps(values, xy)[0, :, :, 0]  # [P, K]
    grid = Grid(x0_m=100.0, y0_m=-50.0, cell_size_m=4.0, width=s, height=s)
    xy_m = np.array([100.0, -50.0]) + xy[0].numpy() * 4.0 * s
    expected = grid.sample(values[0, :, 0].numpy(), xy_m).T  # [P, K]
    assert np.allclose(got.numpy(), expected, atol=1e-10)
    # by hand: the point between four pixel centres
    v = values[0, 0, 0]
    fx, fy = 5.25, 9.75  # pixel-index coordinates of the point
    pt = torch.tensor([[[(fx + 0.5) / s, (fy + 0.5) / s]]], dtype=torch.float64)
    hand = (v[9, 5] * 0.75 * 0.25 + v[9, 6] * 0.25 * 0.25 + v[10, 5] * 0.75 * 0.75 + v[10, 6] * 0.25 * 0.75)
    assert torch.allclose(sample_maps(values, pt)[0, 0, 0, 0], hand)
    xy_req = xy.clone().requires_grad_(True)
    sample_maps(values, xy_req).sum().backward()
    assert torch.isfinite(xy_req.grad).all() and xy_req.grad.abs().sum() > 0


def test_physics_energy_zero_at_truth_and_masks():
    batch = synthetic_batch()
    e_true = physics_energy(batch, batch["target_xy"][:, None])[:, 0]
    e_off = physics_energy(batch, (batch["target_xy"][:, None] + 0.2).clamp(0, 1))[:, 0]
    assert torch.allclose(e_true, torch.zeros(4), atol=1e-10)
    assert (e_off > 1e-4).all()
    no_valid = {**batch, "phys_valid": torch.zeros_like(batch["phys_valid"])}
    assert (physics_energy(no_valid, batch["target_xy"][:, None] + 0.2) == 0).all()
    huber = physics_energy(batch, (batch["target_xy"][:, None] + 0.2).clamp(0, 1), huber_delta=0.1)
    assert (huber[:, 0] <= e_off + 1e-9).all()


def test_refinement_lowers_energy_and_moves_to_truth():
    batch = synthetic_batch(b=6, seed=5)
    target = batch["target_xy"]
    # a diffuse posterior whose components sit 0.08 off the truth
    means = (target[:, None] + torch.tensor([[0.08, -0.06], [-0.1, 0.05]])).clamp(0, 1)
    mix = Mixture(torch.full((6, 2), 0.5), means, torch.full((6, 2, 2), 0.2), torch.zeros(6, 2, dtype=torch.long))
    cfg = RefineConfig(alpha=0.1, beta=1.0, steps=100, step_size=0.005, threshold=0.9)
    res = refine(mix, batch, cfg)
    assert res.applied.all()
    assert (res.energy_after < res.energy_before).all()
    e_direct = energy(mix, batch, res.xy[:, None], cfg)[:, 0]
    assert torch.allclose(e_direct, res.energy_after, atol=1e-5)
    before = (mix.map_component() - target).norm(dim=1)
    after = (res.xy - target).norm(dim=1)
    assert after.median() < 0.5 * before.median()
    # confident posteriors are left alone
    sharp = Mixture(torch.tensor([[0.95, 0.05]]).repeat(6, 1), means, mix.sigmas, mix.cells)
    kept = refine(sharp, batch, cfg)
    assert not kept.applied.any() and torch.equal(kept.xy, means[:, 0])


def test_ablation_switches_change_the_computation():
    """Each ablation switch changes what the model computes (not only that it still trains)."""
    batch = synthetic_batch()
    base = tiny_model()
    # use_map=False: the maps no longer reach the posterior (they do in the full model)
    other = dict(batch, maps=torch.randn_like(batch["maps"]))
    for model, reads_maps in ((base, True), (tiny_model(use_map=False), False)):
        with torch.no_grad():
            a, b = model(batch)[0].logits, model(other)[0].logits
        assert (not torch.allclose(a, b, atol=1e-6)) == reads_maps
    # top_k=1: the single-Gaussian posterior, weight 1
    out, loss = tiny_model(top_k=1)(batch, batch["target_xy"])
    assert out.mixture.means.shape[1] == 1 and torch.allclose(out.mixture.weights, torch.ones(4, 1))
    assert torch.isfinite(loss)
    # use_cell_embedding=False: every component shares one offset and one sigma (not so with it)
    for kw, shared in (({}, False), ({"use_cell_embedding": False}, True)):
        model = tiny_model(**kw)
        torch.nn.init.normal_(model.fine.net[-1].weight, std=0.5)  # the head starts at zero: give it an output
        with torch.no_grad():
            mix = model(batch)[0].mixture
        offsets = mix.means - cell_centers(TINY["grid_size"])[mix.cells]
        assert torch.allclose(mix.sigmas, mix.sigmas[:, :1].expand_as(mix.sigmas), atol=1e-6) == shared
        assert torch.allclose(offsets, offsets[:, :1].expand_as(offsets), atol=1e-6) == shared
    # lambda_phys=0: the loss is Eq. 24 without the physics term, which the full model adds
    for model in (base, tiny_model(lambda_phys=0.0)):
        out, loss = model(batch, batch["target_xy"])
        plain = 0.5 * out.parts["coarse"].mean() + 1.0 * out.parts["fine"].mean()
        assert ("phys" in out.parts) == (model.cfg.lambda_phys > 0)
        extra = model.cfg.lambda_phys * out.parts["phys"].mean() if "phys" in out.parts else 0.0
        assert torch.allclose(loss, plain + extra)
        if "phys" in out.parts:
            assert float(extra.detach()) > 1e-4
    # the encoder switches build the other encoders (their own properties are tested above and below)
    from learn.model import MapViT, RadioEncoder, SetRadioEncoder

    assert type(base.radio) is RadioEncoder and type(base.map) is MapViT
    assert type(tiny_model(radio_encoder="set_transformer").radio) is SetRadioEncoder
    assert type(tiny_model(use_e2_equivariant=True).map) is E2MapViT


def test_e2_map_encoder_is_equivariant():
    cfg = ModelConfig(**{**TINY, "use_e2_equivariant": True, "map_layers": 3})
    torch.manual_seed(0)
    enc = E2MapViT(cfg).eval()
    with torch.no_grad():
        for block in enc.blocks:
            block.att.table.normal_(std=1.0)  # non-trivial relative position/group biases
    mul, inv = group_tables()
    x = torch.randn(2, cfg.map_channels + 1, 32, 32)
    f = enc.features(x)  # [B, G, h, w, d]
    for h in range(8):
        f2 = enc.features(transform(x, h))
        for g in range(8):
            expected = transform(f[:, mul[inv[h], g]].permute(0, 3, 1, 2), h).permute(0, 2, 3, 1)
            assert torch.allclose(f2[:, g], expected, atol=1e-4), (h, g)
    # the fibres really move (the check is not vacuous) and the pooled token is invariant
    assert not torch.allclose(enc.features(transform(x, 1)), f, atol=1e-3)
    assert torch.allclose(enc(transform(x, 5))[:, 0], enc(x)[:, 0], atol=1e-4)
    # the plain ViT is not equivariant
    model = tiny_model()
    t1, t2 = model.map(x), model.map(transform(x, 1))
    assert not torch.allclose(t1[:, 0], t2[:, 0], atol=1e-3)


def test_dense_coarse_head_reads_each_cell_from_its_own_patch():
    """``coarse_head: dense``: a cell's logit moves with its own patch token only, at the heads' cell layout."""
    from learn.model import DenseCoarseHead
    from twin.errors import InputError

    cfg = ModelConfig(**TINY, coarse_head="dense")  # 32 px / patch 8 = 4 patches per side, G = 8: 2 x 2 cells each
    head = DenseCoarseHead(cfg)
    torch.manual_seed(0)
    tokens, z_f = torch.randn(1, 1 + 16, cfg.d_map), torch.randn(1, cfg.d_fusion)
    base = head(tokens, z_f)
    moved = tokens.clone()
    moved[0, 1 + 2 * 4 + 3] += 5.0  # patch row 2 (north), column 3 (east)
    changed = (head(moved, z_f) - base).abs().view(8, 8) > 0  # cell rows north, columns east (learn.heads)
    want = torch.zeros(8, 8, dtype=torch.bool)
    want[4:6, 6:8] = True
    assert torch.equal(changed, want)
    # the switch changes the model: other parameters, other logits, same output contract
    dense, mlp = tiny_model(coarse_head="dense"), tiny_model()
    assert "coarse.mlp.0.weight" in dict(dense.named_parameters())
    assert dict(dense.named_parameters())["coarse.mlp.0.weight"].shape[1] == cfg.d_map + cfg.d_fusion
    batch = synthetic_batch()
    out, loss = dense(batch, batch["target_xy"])
    assert out.logits.shape == (4, 64) and torch.isfinite(loss)
    assert not torch.allclose(out.logits, mlp(batch)[0].logits)
    with pytest.raises(InputError, match="grid_size"):
        PosteriorModel(ModelConfig(**{**TINY, "grid_size": 6}, coarse_head="dense"))
    with pytest.raises(InputError, match="coarse_head"):
        ModelConfig(**{**TINY, "use_map": False}, coarse_head="dense")
