"""What a localization method is to the evaluation harness: ``predict(corpus, indices) -> Predictions``.

Baselines (:mod:`learn.baselines`), the heatmap baseline and checkpoints of the posterior
model return :class:`Predictions`; :func:`learn.evaluate.evaluate` judges any
:class:`Method`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from twin.corpus.store import Corpus

__all__ = ["Predictions", "Method"]


@dataclass
class Predictions:
    """A method's output for N samples.

    Attributes
    ----------
    xy_m : (N, 2)
        Point estimates in scene metres.
    nll : (N,), optional
        -log p(y_true) [nats; density per m²] for density methods.
    in_hdr50, in_hdr90 : (N,) bool, optional
        Whether the truth lies in the 50 % / 90 % highest-density region.
    refined_xy_m : (N, 2), optional
        Estimates after test-time refinement.
    """

    xy_m: np.ndarray
    nll: np.ndarray | None = None
    in_hdr50: np.ndarray | None = None
    in_hdr90: np.ndarray | None = None
    refined_xy_m: np.ndarray | None = None

    def take(self, sel: np.ndarray) -> Predictions:
        def part(v: np.ndarray | None) -> np.ndarray | None:
            return None if v is None else np.asarray(v)[sel]

        return Predictions(np.asarray(self.xy_m)[sel], part(self.nll), part(self.in_hdr50), part(self.in_hdr90),
                           part(self.refined_xy_m))


class Method(Protocol):
    name: str

    def predict(self, corpus: Corpus, indices: np.ndarray, prior: Any = None) -> Predictions:
        """Positions of samples ``indices``; crop-based methods search the crop ``prior``
        (:class:`learn.priors.CropPrior`, default truth-free) places."""
        ...
