"""Post-hoc temperature of the posterior (learn.temperature): the fit against a closed form, and on a tiny corpus."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from cli.learn import main
from learn.evaluate import evaluate
from learn.heads import Mixture
from learn.predict import checkpoint_temperature
from learn.registry import load_method
from learn.temperature import TEMPERATURE_GRID, calibrate_temperature, fit_temperature_batches
from learn.train import load_run_config, train
from tests.test_learn_e2e import corpora  # noqa: F401  (the tiny-city corpora fixture)
from twin.errors import InputError


class _Fixed(torch.nn.Module):
    """A 'model' answering one Gaussian of std ``sigma`` [crop units] at the crop centre."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = sigma

    def forward(self, batch):
        b = batch["target_xy"].shape[0]
        mix = Mixture(torch.ones(b, 1), torch.full((b, 1, 2), 0.5), torch.full((b, 1, 2), self.sigma),
                      torch.zeros(b, 1, dtype=torch.long))
        return SimpleNamespace(mixture=mix), None


def test_temperature_of_an_over_confident_gaussian_is_its_true_spread():
    """Truths from N(centre, (2 s)^2) under a posterior N(centre, s^2): T = 2, coverage 1 - 2^(-1/4) -> 0.5."""
    g = torch.Generator().manual_seed(0)
    s = 0.02
    batches = [{"target_xy": 0.5 + 2 * s * torch.randn(500, 2, generator=g), "crop_size_m": torch.full((500,), 600.0)}
               for _ in range(4)]
    fit = fit_temperature_batches(_Fixed(s), batches)
    assert fit.n == 2000 and fit.temperature == pytest.approx(2.0, rel=0.07)  # grid steps of 12 %
    assert fit.before["coverage50"] == pytest.approx(1 - 2 ** -0.25, abs=0.03)  # P(chi2_2 <= 2 ln 2 / 4)
    assert fit.before["coverage90"] == pytest.approx(1 - 10 ** -0.25, abs=0.03)
    assert abs(fit.after["coverage50"] - 0.5) < 0.04 and abs(fit.after["coverage90"] - 0.9) < 0.03
    nll_fit = fit_temperature_batches(_Fixed(s), batches, objective="nll")
    assert nll_fit.temperature == pytest.approx(2.0, rel=0.07)  # the Gaussian's ML scale is its spread
    assert nll_fit.after["nll"] < nll_fit.before["nll"] - 1.0  # 2 ln 2 + 3/2 - 3/8 ... nats better
    under = fit_temperature_batches(_Fixed(4 * s), batches)  # an under-confident one sharpens
    assert under.temperature == pytest.approx(0.5, rel=0.07)
    with pytest.raises(InputError, match="objective"):
        fit_temperature_batches(_Fixed(s), batches, objective="ece")  # type: ignore[arg-type]


def test_tempering_keeps_the_map_point_and_the_mixture_at_one():
    w = torch.tensor([[0.6, 0.3, 0.1]])
    mix = Mixture(w, torch.rand(1, 3, 2), torch.full((1, 3, 2), 0.05), torch.arange(3)[None])
    assert mix.tempered(1.0) is mix
    hot, cold = mix.tempered(3.0), mix.tempered(0.5)
    assert torch.equal(hot.map_component(), mix.map_component()) and torch.equal(cold.map_component(),
                                                                                  mix.map_component())
    torch.testing.assert_close(hot.weights, torch.softmax(torch.log(w) / 3.0, -1))
    torch.testing.assert_close(hot.sigmas, mix.sigmas * 3.0)
    assert hot.weights[0, 0] < 0.6 < cold.weights[0, 0]
    assert 1.0 in [round(t, 9) for t in TEMPERATURE_GRID]


def test_calibrated_checkpoint_moves_test_coverage_toward_nominal(corpora, tmp_path):  # noqa: F811
    """A tiny model trained a few epochs on the tiny city: T fitted on the val part (prior auto), judged on test."""
    root, a, _ = corpora
    cfg = load_run_config(root / "tiny.yaml", {"train": {"epochs": 3, "num_workers": 0, "val_batches": 0}})
    train([a], cfg, tmp_path / "run", progress=False)
    ckpt = tmp_path / "run" / "last.pt"
    fit = calibrate_temperature(ckpt, [a], "spatial", tmp_path / "calibrated.pt", max_samples=None)
    method = load_method(tmp_path / "calibrated.pt")
    assert method.temperature == fit.temperature != 1.0 and checkpoint_temperature(method.ckpt) == fit.temperature
    assert load_method(ckpt).temperature == 1.0
    before = evaluate(a, load_method(ckpt), "spatial", fit=False).parts["all"]
    after = evaluate(a, method, "spatial", fit=False).parts["all"]
    assert after["mean_m"] == pytest.approx(before["mean_m"])  # the MAP point is unchanged
    dist = [abs(p["coverage50"] - 0.5) + abs(p["coverage90"] - 0.9) for p in (before, after)]
    assert dist[1] < dist[0], (fit.temperature, before, after)
    assert after["nll"] != before["nll"]
    with pytest.raises(InputError, match="nothing"):
        calibrate_temperature(ckpt, [a], "spatial", tmp_path / "x.pt", part="nothing")
    # the CLI verb writes the same calibrated checkpoint (max_samples above the val part's size)
    res = CliRunner().invoke(main, ["temperature", "--ckpt", str(ckpt), "--data", a, "--split", "spatial",
                                    "--out", str(tmp_path / "cli.pt")])
    assert res.exit_code == 0, res.output
    assert f"temperature {fit.temperature:.3g} on {fit.n} val samples" in res.output
    assert load_method(tmp_path / "cli.pt").temperature == fit.temperature
