"""Synthetic batches in the contract's batch-dict format (LEARN_CONTRACT.md) for model tests.

Each sequence's cells have smooth feature maps (planes and a bump) on the crop, and each
event's features are those maps sampled at the truth, so the physics term vanishes at
the truth.
"""

from __future__ import annotations

from pathlib import Path

import torch

from learn.losses import sample_maps

#: The model section of a tiny posterior model's run config (tests train it in seconds).
TINY_MODEL_YAML = """\
model:
  d_radio: 32
  radio_layers: 1
  radio_heads: 4
  d_map: 32
  map_layers: 1
  map_heads: 4
  patch_size: 8
  d_fusion: 32
  fusion_heads: 4
  grid_size: 8
  top_k: 3
  d_cell: 8
  head_hidden: 64
"""

#: The train and data sections that go after :data:`TINY_MODEL_YAML` (and any extra model keys)
#: for a few steps on a tiny-city corpus with the physics-likelihood channels.
TINY_LIKELIHOOD_RUN_YAML = """\
train:
  epochs: 1
  max_steps: 3
  batch_size: 16
  num_workers: 0
  log_every: 1
  val_batches: 1
  split_scheme: spatial
data:
  crop_size_m: 256.0
  crop_px: 32
  max_cells: 4
  likelihood: true
"""


def learn_cli(*args: str) -> str:
    """``learn ARGS`` in-process; asserts exit code 0 and returns its stdout (progress bars go to stderr)."""
    from click.testing import CliRunner

    import cli.learn  # noqa: F401  (registers every subcommand)
    from cli.learn import main

    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


def assert_eval_predict_round_trip(ckpt: Path, url: str, out_csv: Path) -> dict:
    """``learn eval --json`` and ``learn predict`` of checkpoint ``ckpt`` on corpus ``url``'s spatial
    test part: every test sample scored under the truth-free coarse prior, and predict's per-sample
    errors giving eval's median. Returns eval's JSON."""
    import csv
    import json

    import numpy as np
    import pytest

    from twin.corpus.store import open_corpus

    res = json.loads(learn_cli("eval", "--data", url, "--split", "spatial", "--ckpt", str(ckpt),
                               "--json").strip().splitlines()[-1])
    n_test = len(open_corpus(url).split_indices("spatial", "test"))
    assert res["n"] == n_test and np.isfinite(res["mean_m"]) and res["prior"] == "coarse"
    learn_cli("predict", "--ckpt", str(ckpt), "--data", url, "--split", "spatial", "--out", str(out_csv))
    rows = list(csv.DictReader(out_csv.read_text().splitlines()))
    assert len(rows) == n_test
    assert np.median([float(r["error_m"]) for r in rows]) == pytest.approx(res["median_m"], rel=1e-4)
    return res


def tiny_city_corpus(root: Path, run_yaml: str) -> tuple[Path, str]:
    """The tiny city's scene and maps under ``root``, a 160-sequence drive corpus on them and
    ``root/tiny.yaml`` holding ``run_yaml``: ``(root, corpus url)``."""
    from tests.data.tiny_city.make import make_maps, make_scene
    from twin.corpus.sampler import SampleConfig, sample
    from twin.scene.build import load_twin_scene

    scene = load_twin_scene(make_scene(root / "scene"))
    maps = make_maps(root / "scene", root / "maps.zarr")
    corpus = sample(scene, maps, SampleConfig(n=160, mode="drive", seed=3), root / "c.zarr")
    (root / "tiny.yaml").write_text(run_yaml)
    return root, corpus.url


def synthetic_batch(b: int = 4, t: int = 6, f: int = 3, c: int = 2, s: int = 32, k: int = 3,
                    n_cells: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(b, 2, generator=g) * 0.8 + 0.1  # [B, 2]
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, t - 2:] = False  # padding in the first sequence
    slot = torch.randint(0, k, (b, t), generator=g)
    slot[~mask] = -1
    cell_index = torch.randint(1, n_cells, (b, t), generator=g)
    cell_index[~mask] = 0
    yy, xx = torch.meshgrid((torch.arange(s) + 0.5) / s, (torch.arange(s) + 0.5) / s, indexing="ij")
    coef = torch.randn(b, k, f, 3, generator=g)
    centre = torch.rand(b, k, 2, generator=g)
    bump = torch.exp(-((xx - centre[..., 0, None, None]) ** 2 + (yy - centre[..., 1, None, None]) ** 2) / 0.05)
    phys = (coef[..., 0, None, None] * xx + coef[..., 1, None, None] * yy
            + coef[..., 2, None, None] * bump[:, :, None])  # [B, K, F, S, S]
    at_truth = sample_maps(phys, target[:, None])[:, 0]  # [B, K, F]
    feats = torch.gather(at_truth, 1, slot.clamp_min(0)[..., None].expand(b, t, f))
    feats = feats * mask[..., None]
    time_s = torch.cumsum(torch.rand(b, t, generator=g) * 2, dim=1) + 100.0
    return {
        "cell_index": cell_index,
        "beam_index": torch.randint(0, 5, (b, t), generator=g) * mask,
        "time_s": time_s,
        "features": feats,
        "feature_valid": mask[..., None].expand(b, t, f).clone(),
        "mask": mask,
        "bs_xy": torch.rand(b, t, 2, generator=g),
        "bs_valid": mask.clone(),
        "maps": torch.randn(b, c, s, s, generator=g),
        "map_valid": torch.ones(b, 1, s, s, dtype=torch.bool),
        "phys_maps": phys,
        "phys_valid": torch.ones_like(phys, dtype=torch.bool),
        "event_slot": slot,
        "target_xy": target,
        "crop_origin_m": torch.zeros(b, 2),
        "crop_size_m": torch.full((b,), 600.0),
        "position_xy_m": target * 600.0,
        "scene_index": torch.zeros(b, dtype=torch.long),
        "index": torch.arange(b),
    }


class SyntheticDataset(torch.utils.data.Dataset):
    """``n`` fixed synthetic samples (one-sample batch dicts without the batch axis)."""

    def __init__(self, n: int, **kw):
        self.items = [{k: v[0] for k, v in synthetic_batch(b=1, seed=i, **kw).items()} for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.items[i]


def synthetic_info(f: int = 3, c: int = 2, n_cells: int = 10) -> dict:
    return {"n_features": f, "n_cells": n_cells, "map_channels": c,
            # CellVocab's convention: key k of the list is embedding row k + 1 (row 0: padding)
            "cell_vocab": [str(k) for k in range(1, n_cells)], "data_info": {"source": "synthetic"}}
