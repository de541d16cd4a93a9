"""Normalization statistics of the dataset's inputs: per feature over the corpora, per map channel over their scenes.

Every mean / standard deviation follows one rule, :func:`twin.corpus.store.mean_std`
(divide by n; a constant or empty input gets std 1), from moment sums
(:func:`twin.corpus.store.moment_sums`): the corpus's stored ``stats``, their pooling over
corpora here, the map channels, and the heatmap baseline's statistics of a split's
training part (:func:`feature_statistics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from learn.data.scenes import scene_channels, scene_group
from twin import io
from twin.corpus.store import Corpus, mean_std, moment_sums

__all__ = ["Normalization", "compute_normalization", "feature_statistics"]


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
    for c in corpora:  # moment sums back from each corpus's (count, mean, std): they pool exactly
        st = c.stats
        f_n = np.asarray(st["feature_count"], np.float64)
        f_mean = np.asarray(st["feature_mean"], np.float64)
        f_std = np.asarray(st["feature_std"], np.float64)
        count += f_n
        total += f_n * f_mean
        total_sq += f_n * (f_std**2 + f_mean**2)
    mean, std = mean_std(count, total, total_sq)
    channels: list[str] = []
    sums: dict[str, np.ndarray] = {}
    for c in corpora:
        for s in range(min(c.n_scenes, stats_scenes)):
            group = scene_group(c, s)
            radio, semantic = scene_channels(group)
            for key, names in (("radio_maps", radio), ("semantic_maps", semantic)):
                for q, name in enumerate(names):
                    v = np.asarray(io.array(group, key, c.url)[q], np.float64)
                    if name not in sums:
                        channels.append(name)
                        sums[name] = np.zeros(3)
                    sums[name] += np.array(moment_sums(v, np.ones(v.shape, bool), axis=tuple(range(v.ndim))))
    map_mean, map_std = mean_std(*np.array([sums[name] for name in channels]).reshape(-1, 3).T)
    return Normalization(list(corpora[0].feature_names), mean.tolist(), std.tolist(), channels, map_mean.tolist(),
                         map_std.tolist())


def feature_statistics(corpus: Corpus, indices: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean and standard deviation of each feature over the real events of samples ``indices`` (:func:`mean_std`)."""
    b = corpus.batch(np.asarray(indices, np.int64), ["features", "mask"])
    mean, std = mean_std(*moment_sums(b["features"], b["mask"][..., None], axis=(0, 1)))
    return mean.tolist(), std.tolist()
