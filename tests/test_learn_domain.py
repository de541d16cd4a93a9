"""Domain-adversarial training (seed 004 appendix D): gradient reversal, the domain term, the switch, the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from cli.learn import main
from learn.checkpoint import load_checkpoint
from learn.domain import (
    SOURCE,
    TARGET,
    DomainAdversarial,
    DomainDataset,
    domain_adversarial,
    grad_reverse,
)
from learn.model import ModelConfig, PosteriorModel
from learn.predict import load_posterior
from learn.registry import load_method
from learn.train import load_run_config, train
from tests.learn_batch import TINY_MODEL_YAML, SyntheticDataset, synthetic_batch, synthetic_info
from tests.test_learn_data import CELL_IDS, CELL_XY, GRID, T, _samples, _write
from twin.corpus.store import CorpusWriter
from twin.errors import InputError

TINY = dict(n_features=3, n_cells=10, n_beams=8, map_channels=2, crop_px=32, d_radio=32, radio_layers=1,
            radio_heads=4, d_map=32, map_layers=1, map_heads=4, patch_size=8, d_fusion=32, fusion_heads=4,
            grid_size=8, top_k=3, d_cell=8, head_hidden=32)


@pytest.fixture(autouse=True)
def one_thread():
    # The test machine's 2 cores are shared: a single thread is several times faster here.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_gradient_reversal_is_minus_lambda_times_the_gradient():
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 7, dtype=torch.float64)
    for lam in (0.0, 0.3, 2.0):
        x.grad = None
        y = grad_reverse(x, lam)
        assert torch.equal(y, x)                                   # identity forward
        (y * g).sum().backward()
        assert torch.equal(x.grad, -lam * g), lam                  # exactly -lambda x the gradient


def _grads(model: torch.nn.Module, net: torch.nn.Module, batch: dict) -> tuple[dict, dict, torch.Tensor]:
    model.zero_grad()
    net.zero_grad()
    out, loss = net(batch, batch["target_xy"])
    loss.backward()
    return ({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None},
            {k: p.grad.clone() for k, p in net.named_parameters() if k.startswith("domain_classifier")}, out)


def test_the_domain_term_reaches_the_encoder_reversed():
    torch.manual_seed(0)
    model = PosteriorModel(ModelConfig(**TINY)).train()
    batch = synthetic_batch(b=6, s=32)
    batch["domain"] = torch.tensor([SOURCE, TARGET] * 3)
    g0, _, out0 = _grads(model, model, batch)
    assert out0.radio_cls.shape == (6, 32) and "domain" not in out0.parts
    nets = [domain_adversarial(model, lam) for lam in (0.5, 1.0)]
    nets[1].domain_classifier.load_state_dict(nets[0].domain_classifier.state_dict())
    (g1, h1, out1), (g2, h2, _) = (_grads(model, n, batch) for n in nets)
    # The domain term is a loss part; the loss is the model's plus its mean.
    _, loss_y = model(batch, batch["target_xy"])
    ce = F.cross_entropy(nets[0].domain_classifier(out1.radio_cls.detach()), batch["domain"], reduction="none")
    torch.testing.assert_close(out1.parts["domain"], ce)
    assert set(out1.parts) == {"coarse", "fine", "phys", "domain"}
    # The radio encoder's gradients change, linearly in -lambda; the map encoder's do not.
    radio = [k for k in g0 if k.startswith("radio.")]
    assert any(not torch.allclose(g1[k], g0[k]) for k in radio)
    for k in g0:
        torch.testing.assert_close(g2[k] - g0[k], 2 * (g1[k] - g0[k]), atol=1e-6, rtol=1e-4)
        if k.startswith("map."):
            torch.testing.assert_close(g1[k], g0[k], atol=1e-7, rtol=1e-6)
    # The classifier itself descends the domain loss (no reversal on its side), whatever lambda.
    z = out1.radio_cls.detach()
    clf = nets[0].domain_classifier
    clf.zero_grad()
    F.cross_entropy(clf(z), batch["domain"]).backward()
    for name, p in clf.named_parameters():
        torch.testing.assert_close(h1[f"domain_classifier.{name}"], p.grad)
        torch.testing.assert_close(h2[f"domain_classifier.{name}"], p.grad)
    # Validation (eval mode) and inference see the model's own loss; the switch at 0 is the model itself.
    nets[0].eval()
    out_e, loss_e = nets[0](batch, batch["target_xy"])
    assert "domain" not in out_e.parts
    model.eval()
    assert torch.allclose(loss_e, model(batch, batch["target_xy"])[1])
    assert domain_adversarial(model, 0.0) is model
    with pytest.raises(InputError, match="'domain' labels"):
        nets[0].train()(synthetic_batch(s=32), synthetic_batch(s=32)["target_xy"])
    assert torch.isfinite(loss_y)


def _ft_config(**train):
    return load_run_config("finetune", {"data": {"crop_px": 32}, "train": {
        "epochs": 1, "num_workers": 0, "batch_size": 8, "log_every": 1, "val_batches": 1, **train}})


def _columns(run: Path) -> tuple[list[str], list[dict]]:
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    return list(rows[0].keys()), rows


def test_lambda_zero_is_the_plain_finetune_and_lambda_logs_the_domain_term(tmp_path):
    target, source = SyntheticDataset(16, s=32), SyntheticDataset(16, s=32)
    source.items = [{**it, "features": it["features"] + 1.0} for it in SyntheticDataset(16, s=32).items]  # shifted
    info = synthetic_info()
    pre = tmp_path / "pre"
    small = load_run_config("small", {"data": {"crop_px": 32}, "train": {"epochs": 1, "num_workers": 0,
                                                                          "batch_size": 8, "val_batches": 0}})
    train([], small, pre, datasets=(target, None, info), progress=False)
    train([], _ft_config(), tmp_path / "plain", init=pre / "last.pt", datasets=(target, target, info), progress=False)
    train([], _ft_config(domain_adversarial_lambda=0.0), tmp_path / "zero", init=pre / "last.pt",
          datasets=(target, target, info), progress=False)
    plain, zero = load_checkpoint(tmp_path / "plain" / "last.pt"), load_checkpoint(tmp_path / "zero" / "last.pt")
    assert plain["model"].keys() == zero["model"].keys()
    for k in plain["model"]:
        assert torch.equal(plain["model"][k], zero["model"][k]), k        # bit-identical
    assert "domain" not in _columns(tmp_path / "zero")[0]

    mixed = DomainDataset([target, source], [TARGET, SOURCE])
    assert len(mixed) == 32 and int(mixed[20]["domain"]) == SOURCE and int(mixed[3]["domain"]) == TARGET
    run = tmp_path / "da"
    train([], _ft_config(domain_adversarial_lambda=0.5), run, init=pre / "last.pt", datasets=(mixed, target, info),
          progress=False)
    header, rows = _columns(run)
    assert "domain" in header
    domain = [float(r["domain"]) for r in rows if r["domain"]]
    assert len(domain) == 4 and all(0 < v < 5 for v in domain)            # cross-entropies of 2 classes
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["configs"]["train"]["domain_adversarial_lambda"] == 0.5
    head = [k for k in ckpt["model"] if k.startswith("domain_classifier.")]
    assert head and "radio.cls" in ckpt["model"]                          # the model's keys stay unprefixed
    assert any(not torch.equal(ckpt["model"][k], plain["model"][k]) for k in plain["model"] if k.startswith("radio"))
    # Evaluation and prediction read the posterior; the classifier's weights are left out.
    model, _ = load_posterior(run / "best.pt")
    assert not any(k.startswith("domain_classifier") for k in model.state_dict())
    assert type(load_method(run / "best.pt")).__name__ == "PosteriorMethod"
    # The wrapper's state dict round-trips (resume).
    net = domain_adversarial(PosteriorModel(ModelConfig(**ckpt["configs"]["model"])), 0.5)
    assert isinstance(net, DomainAdversarial)
    res = net.load_state_dict(ckpt["model"])
    assert not res.missing_keys and not res.unexpected_keys
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in net.state_dict().items())


def _alias_source(path) -> str:
    """A corpus of another scene whose features carry the NB-IoT names of the same quantities, without maps."""
    w = CorpusWriter(path, ("nrsrp_dbm", "nsinr_db"), ("dBm", "dB"), T, split_schemes=("random",), chunk_samples=16)
    w.add_scene("other", GRID, None, cell_id=CELL_IDS, cell_xy_m=CELL_XY)
    w.append(_samples(24, np.random.default_rng(3), False))
    return w.close().url


def test_finetune_with_source_corpora_through_the_cli(tmp_path):
    target = _write(tmp_path / "target.zarr", n=24).url
    source = _alias_source(tmp_path / "source.zarr")
    (tmp_path / "tiny.yaml").write_text(TINY_MODEL_YAML + "train:\n  epochs: 1\n  batch_size: 8\n  num_workers: 0\n"
                                        "  log_every: 1\ndata:\n  crop_size_m: 300.0\n  crop_px: 32\n  max_cells: 2\n")
    runner = CliRunner()

    def ok(*args):
        res = runner.invoke(main, [str(a) for a in args])
        assert res.exit_code == 0, res.output
        return res.output

    ok("pretrain", "--data", target, "--config", tmp_path / "tiny.yaml", "--split", "random", "--out", tmp_path / "pre")
    ok("finetune", "--init", tmp_path / "pre" / "best.pt", "--data", target, "--source-data", source,
       "--domain-adversarial-lambda", "0.3", "--config", "finetune", "--epochs", "1", "--batch-size", "8",
       "--num-workers", "0", "--split", "random", "--out", tmp_path / "da")
    ckpt = load_checkpoint(tmp_path / "da" / "last.pt")
    # Training saw both corpora: every source training sample (split code 0) and the target's.
    n_train = int((np.arange(24) % 5 != 0).sum())
    assert ckpt["step"] == (2 * n_train) // 8
    assert ckpt["data_info"]["source_corpora"] == [source] and ckpt["data_info"]["target_corpora"] == [target]
    assert any(k.startswith("other:") for k in ckpt["cell_vocab"]) and any(k.startswith("toy:") for k in
                                                                           ckpt["cell_vocab"])
    header, rows = _columns(tmp_path / "da")
    assert "domain" in header and all(np.isfinite(float(r["domain"])) for r in rows if r["domain"])
    # The source corpus alone has no maps and no cell maps; its batches still stack with the target's.
    res = runner.invoke(main, ["finetune", "--init", str(tmp_path / "pre" / "best.pt"), "--data", target,
                               "--domain-adversarial-lambda", "0.3", "--config", "finetune", "--split", "random",
                               "--out", str(tmp_path / "nosource")])
    assert res.exit_code == 2 and "source corpora (--source-data)" in res.output
    assert "--source-data" in runner.invoke(main, ["finetune", "--help"]).output
