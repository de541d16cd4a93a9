"""Normalization statistics of the dataset's inputs: per feature over the corpora, per map channel over their scenes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from learn.data.scenes import scene_channels, scene_group
from twin import io
from twin.corpus.store import Corpus

__all__ = ["Normalization", "compute_normalization"]


@dataclass
class Normalization:
    """Feature and map statistics: ``(value - mean) / std`` per feature and per map channel."""

    feature_names: list[str]
    feature_mean: list[float]
    feature_std: list[float]
    map_channels: list[str] = field(default_factory=list)
    map_mean: list[float] = field(default_factory=list)
    map_std: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists of str / float (loadable with ``torch.load(weights_only=True)``)."""
        return {k: [str(x) if k.endswith(("names", "channels")) else float(x) for x in v]
                for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        return cls(**{k: list(v) for k, v in data.items()})


def compute_normalization(corpora: Sequence[Corpus], stats_scenes: int) -> Normalization:
    """Pooled feature statistics of the corpora and per-channel map statistics of their scenes."""
    f = len(corpora[0].feature_names)
    count = np.zeros(f)
    total = np.zeros(f)
    total_sq = np.zeros(f)
    for c in corpora:
        st = c.stats
        f_n = np.asarray(st["feature_count"], np.float64)
        f_mean = np.asarray(st["feature_mean"], np.float64)
        f_std = np.asarray(st["feature_std"], np.float64)
        count += f_n
        total += f_n * f_mean
        total_sq += f_n * (f_std**2 + f_mean**2)
    mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    std = np.where(count > 1, np.sqrt(np.maximum(total_sq / np.maximum(count, 1) - mean**2, 0.0)), 1.0)
    std = np.where(std > 1e-6, std, 1.0)
    channels: list[str] = []
    sums: dict[str, list[float]] = {}
    for c in corpora:
        for s in range(min(c.n_scenes, stats_scenes)):
            group = scene_group(c, s)
            radio, semantic = scene_channels(group)
            for key, names in (("radio_maps", radio), ("semantic_maps", semantic)):
                for q, name in enumerate(names):
                    v = np.asarray(io.array(group, key, c.url)[q], np.float64)
                    v = v[np.isfinite(v)]
                    if name not in sums:
                        channels.append(name)
                        sums[name] = [0.0, 0.0, 0.0]
                    acc = sums[name]
                    acc[0] += v.size
                    acc[1] += v.sum()
                    acc[2] += (v**2).sum()
    map_mean, map_std = [], []
    for name in channels:
        n_px, s1, s2 = sums[name]
        mu = s1 / n_px if n_px else 0.0
        sd = math.sqrt(max(s2 / n_px - mu * mu, 0.0)) if n_px else 1.0
        map_mean.append(mu)
        map_std.append(sd if sd > 1e-6 * max(1.0, abs(mu)) else 1.0)
    return Normalization(list(corpora[0].feature_names), mean.tolist(), std.tolist(), channels, map_mean, map_std)
