"""Where a method searches: the crop priors shared by ``learn eval`` and ``learn predict``.

Crop-based methods (the posterior and heatmap models, k-NN in the square, map matching)
read a square of ``crop_size_m`` around a centre that a *prior* chooses. The same prior
gives every method of a run the same centres (computed once per corpus and indices).

* ``auto`` (the default) — ``coarse`` where the corpus has per-cell maps, else
  ``serving-cell``; outputs name the prior it resolved to. Measured on the demo corpus
  (spatial test part, 600 m crops): ``coarse`` crops hold 92 % of the truths (centre
  104 m from it on average), ``serving-cell`` crops 60 % (339 m) (docs/benchmarks.md).
* ``serving-cell`` — the site of the sequence's strongest cell at its last report (the
  classic cell-ID fix; the BS file's / corpus ``cell_xy_m`` positions); needs no maps.
* ``coarse`` — map matching (:mod:`learn.mapmatch`) over the whole scene on a grid of
  ``coarse_cell_m`` cells, the crop centred on its mode; needs the per-cell maps.
* ``whole`` — no crop: for methods that search the whole scene (WkNN, map matching);
  crop-based models refuse it.
* ``truth`` — **the seeds' protocol**: the crop around the true position, shifted by a
  deterministic offset of up to ``max_offset_frac`` of its side
  (:func:`learn.data.crops.eval_crop_origins`). No deployed system has it; it exists to
  compare with published figures and every output labels it.

Nothing here but ``truth`` reads a position; a truth outside the chosen crop is scored as is.
Training keeps truth-centred random crops (:func:`learn.data.crops.random_crop_origins`):
that is supervision, not inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from learn.data.crops import eval_crop_origins
from learn.methods import Predictions
from learn.registry import register_baseline
from twin.corpus.store import Corpus
from twin.errors import InputError

__all__ = ["PRIORS", "DEFAULT_PRIOR", "CropPrior", "resolve_prior", "serving_sites", "PriorOnly", "crop_origins_m"]

PRIORS = ("serving-cell", "coarse", "whole", "truth")
DEFAULT_PRIOR = "auto"  # coarse with per-cell maps, else serving-cell
LABELS = {
    "auto": "auto (coarse where the corpus has per-cell maps, else serving-cell; truth-free)",
    "serving-cell": "serving-cell (crop centred on the strongest cell's site; truth-free)",
    "coarse": "coarse (crop centred on the mode of whole-scene coarse map matching; truth-free)",
    "whole": "whole (no crop: the whole scene; truth-free)",
    "truth": "truth (the seeds' protocol: crop placed around the true position; not deployable)",
}


def _strength_feature(names: list[str]) -> int:
    for k, n in enumerate(names):
        if "rsrp" in n.lower():
            return k
    return 0


def serving_sites(corpus: Corpus, indices: np.ndarray) -> np.ndarray:
    """Per sample ``(N, 2)`` [scene m]: the site of its strongest cell with a known site.

    Strongest by the RSRP feature (else the first feature) at the last measurement instant,
    then over the whole sequence; a sample whose cells have no known site gets its
    scene's centre.
    """
    indices = np.asarray(indices, np.int64)
    b = corpus.batch(indices, ["cell_id", "features", "mask", "time_s", "scene_index"])
    k = _strength_feature(corpus.feature_names)
    out = np.empty((len(indices), 2))
    sites: dict[int, tuple[dict[int, np.ndarray], tuple[float, float]]] = {}
    for i, (cell, feat, mask, t, s) in enumerate(zip(b["cell_id"], b["features"], b["mask"], b["time_s"],
                                                     b["scene_index"], strict=True)):
        if int(s) not in sites:
            sc = corpus.scene(int(s))
            sites[int(s)] = ({int(c): np.asarray(xy, np.float64) for c, xy in zip(sc.cell_id, sc.cell_xy_m, strict=True)
                              if np.isfinite(xy).all()}, sc.grid.center_m)
        table, centre = sites[int(s)]
        mask = np.asarray(mask, bool)
        last = mask & (t == t[mask].max()) if mask.any() else mask
        strength = np.where(np.isfinite(feat[:, k]), feat[:, k], -np.inf)
        out[i] = centre
        for sel in (last, mask):
            order = np.flatnonzero(sel)[np.argsort(-strength[sel], kind="stable")]
            hit = next((table[int(cell[j])] for j in order if int(cell[j]) in table), None)
            if hit is not None:
                out[i] = hit
                break
    return out


@dataclass
class CropPrior:
    """One of :data:`PRIORS` with its options; :meth:`centres_m` gives the crop centres.

    Parameters
    ----------
    name : str
        serving-cell, coarse, whole or truth.
    coarse_cell_m : float
        ``coarse``: cell side of the first pass's grid [m].
    pixel_prior : str
        ``coarse``: pixels searched (road, outdoor, none).
    max_offset_frac, crop_seed : float, int
        ``truth``: the seeds' deterministic offsets.
    """

    name: str = DEFAULT_PRIOR
    coarse_cell_m: float = 20.0
    pixel_prior: str = "road"
    max_offset_frac: float = 0.35
    crop_seed: int = 0
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.name not in (*PRIORS, "auto"):
            raise InputError(f"prior '{self.name}' is not one of {', '.join(PRIORS)} (or auto)")

    @property
    def label(self) -> str:
        return LABELS[self.name]

    def for_corpus(self, corpus: Corpus) -> CropPrior:
        """The concrete prior used on ``corpus``: ``auto`` resolved (the same object on every call)."""
        if self.name != "auto":
            return self
        key = ("auto", corpus.url)
        if key not in self._cache:
            from learn.data.scenes import has_cell_maps

            self._cache[key] = CropPrior("coarse" if has_cell_maps(corpus) else "serving-cell", self.coarse_cell_m,
                                         self.pixel_prior, self.max_offset_frac, self.crop_seed)
        return self._cache[key]

    def centres_m(self, corpus: Corpus, indices: np.ndarray, crop_size_m: float) -> np.ndarray | None:
        """Crop centres ``(N, 2)`` [scene m] of samples ``indices``; ``None`` for ``whole``."""
        indices = np.asarray(indices, np.int64)
        if self.name == "auto":
            return self.for_corpus(corpus).centres_m(corpus, indices, crop_size_m)
        if self.name == "whole":
            return None
        if self.name == "truth":
            truth = corpus.batch(indices, ["position_xy_m"])["position_xy_m"].astype(np.float64)
            if not np.isfinite(truth).all():
                raise InputError(f"{corpus.url}: --prior truth needs the true positions, and "
                                 f"{int((~np.isfinite(truth).all(1)).sum())} samples have none; use serving-cell "
                                 "or coarse")
            return eval_crop_origins(indices, truth, crop_size_m, self.max_offset_frac, self.crop_seed) + crop_size_m / 2
        key = (self.name, corpus.url, indices.tobytes())
        if key not in self._cache:
            self._cache[key] = (serving_sites(corpus, indices) if self.name == "serving-cell"
                                else self._coarse(corpus, indices))
        return self._cache[key]

    def _coarse(self, corpus: Corpus, indices: np.ndarray) -> np.ndarray:
        from learn.mapmatch import corpus_events, feature_sigmas, scene_matcher

        sigma = feature_sigmas(corpus.feature_names, corpus.attrs.get("config"), corpus.stats.get("feature_std"))

        events, temper, scenes = corpus_events(corpus, indices, "last")
        out = np.full((len(indices), 2), np.nan)
        for s in np.unique(scenes):
            sel = np.flatnonzero(scenes == s)
            grid = corpus.scene(int(s)).grid
            factor = max(1, int(round(self.coarse_cell_m / grid.cell_size_m)))
            res = scene_matcher(corpus, int(s), sigma, self.pixel_prior, factor).match(
                [events[i] for i in sel], temper[sel])
            out[sel] = res.xy_m
        missing = ~np.isfinite(out).all(1)
        if missing.any():  # nothing heard with a map: the serving cell
            out[missing] = serving_sites(corpus, indices[missing])
        return out


def resolve_prior(prior: CropPrior | str | None) -> CropPrior:
    """A :class:`CropPrior` from itself, a name, or ``None`` (the default, truth-free)."""
    if isinstance(prior, CropPrior):
        return prior
    return CropPrior(prior or DEFAULT_PRIOR)


def crop_origins_m(prior: CropPrior | str | None, corpus: Corpus, indices: np.ndarray, crop_size_m: float,
                   method: str) -> np.ndarray:
    """South-west corners ``(N, 2)`` of a crop-based ``method``'s crops; refuses ``whole``."""
    p = resolve_prior(prior)
    centres = p.centres_m(corpus, indices, crop_size_m)
    if centres is None:
        raise InputError(f"{method} reads {crop_size_m:g} m crops and cannot search the whole scene; "
                         "use --prior serving-cell or coarse")
    return centres - crop_size_m / 2


@register_baseline("prior-only")
@dataclass
class PriorOnly:
    """The prior alone as a method: always answers the crop centre (``whole``: the scene centre)."""

    crop_size_m: float = 600.0
    name: str = "prior-only"

    def predict(self, corpus: Corpus, indices: np.ndarray, prior: Any = None) -> Predictions:
        indices = np.asarray(indices, np.int64)
        centres = resolve_prior(prior).centres_m(corpus, indices, self.crop_size_m)
        if centres is None:
            scenes = corpus.batch(indices, ["scene_index"])["scene_index"].astype(np.int64)
            mid = {int(s): corpus.scene(int(s)).grid.center_m for s in np.unique(scenes)}
            centres = np.array([mid[int(s)] for s in scenes], np.float64).reshape(-1, 2)
        return Predictions(xy_m=np.asarray(centres, np.float64))
