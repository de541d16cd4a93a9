"""The search space of a base station's pose, and the GP kernel that treats azimuth as a circle.

One site (a ``bs_id`` of the BS file, with one or more sector cells) is fitted at a time.
Its parameters:

========== ============= ======================================================================
name       default range meaning
========== ============= ======================================================================
x, y       -50:50        lateral offset [m] from the file's position (scene x east, y north)
h          20:100        antenna height above the ground [m], set on every cell of the site
azimuth    0:360         boresight of the site's first cell [deg clockwise from north]; the
                         other sectors turn with it, keeping their offsets from it
tilt       0:15          downtilt [deg], set on every cell of the site
power      -10:10        offset [dB] added to every cell's ``power_dbm``
========== ============= ======================================================================

Azimuth is circular. An arc ``lo:hi`` (``hi - lo <= 360``, either end may be negative or
above 360: ``-60:60`` is the arc through north) maps the optimizer's unit coordinate
``t`` to ``lo + t (hi - lo)`` modulo 360. When the arc is the full circle the GP must
see ``t = 0`` and ``t = 1`` as the same point, and 359° next to 1°: :class:`CircularMatern`
embeds each circular coordinate on a circle of circumference 1,
``t -> (cos 2πt, sin 2πt) / 2π``, and evaluates a Matérn kernel on the embedded
points. The chord between two embedded angles is ``sin(πΔ)/π``, which is ``Δ`` for
small separations and largest at half a turn, so the kernel is a function of the
angular separation alone, is positive definite (a Matérn kernel restricted to a
subset of R^n), and is periodic. Both embedded coordinates share one length scale
(the angular one), so the kernel is invariant under rotation of the angle as well.
A rejected alternative, optimizing ``(cos φ, sin φ)`` as two free box coordinates,
leaves a radius the objective ignores and a singular centre in the box.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.gaussian_process.kernels import Hyperparameter, Matern
from skopt.learning.gaussian_process.kernels import Kernel

from twin.errors import InputError

__all__ = ["PARAMS", "DEFAULT_BOUNDS", "PROFILE_STEP", "SearchSpace", "CircularMatern", "parse_params",
           "parse_bounds", "make_estimator"]

#: Profile steps per parameter (in its unit): the uncertainty probe around the result.
PROFILE_STEP = {"x": 5.0, "y": 5.0, "h": 5.0, "azimuth": 10.0, "tilt": 2.0, "power": 2.0}

PARAMS = ("x", "y", "h", "azimuth", "tilt", "power")
DEFAULT_PARAMS = ("x", "y", "h", "azimuth")
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "x": (-50.0, 50.0),       # seed 004 §5.2: lateral offsets in [-50, 50]^2 m
    "y": (-50.0, 50.0),
    "h": (20.0, 100.0),       # seed 004 §5.2: height in [20, 100] m
    "azimuth": (0.0, 360.0),  # the full circle
    "tilt": (0.0, 15.0),      # macro-cell downtilts
    "power": (-10.0, 10.0),   # dB around the file's power
}
_UNITS = {"x": "m", "y": "m", "h": "m", "azimuth": "deg", "tilt": "deg", "power": "dB"}


def parse_params(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"x,y,h,azimuth"`` (or a sequence) -> checked parameter names, in the given order."""
    names = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    bad = [p for p in names if p not in PARAMS]
    if bad:
        raise InputError(f"--params: unknown parameter(s) {', '.join(map(repr, bad))}; "
                         f"choose from {', '.join(PARAMS)}")
    if not names:
        raise InputError(f"--params: no parameter given; choose from {', '.join(PARAMS)}")
    dup = sorted({p for p in names if names.count(p) > 1})
    if dup:
        raise InputError(f"--params: {', '.join(dup)} given twice")
    return tuple(names)


def parse_bounds(text: str | Mapping[str, Sequence[float]] | None) -> dict[str, tuple[float, float]]:
    """``"x=-30:30,h=25:60"`` (or a mapping) -> every parameter's bounds, defaults filled in.

    Linear parameters need ``lo < hi``. Azimuth takes an arc ``lo:hi`` clockwise from
    ``lo`` with ``0 < hi - lo <= 360``.
    """
    given: dict[str, tuple[float, float]] = {}
    problems: list[str] = []
    if isinstance(text, str):
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, eq, rng = part.partition("=")
            lo_s, colon, hi_s = rng.partition(":")
            if not eq or not colon:
                problems.append(f"{part!r}: expected NAME=LOW:HIGH, e.g. h=20:100")
                continue
            try:
                given[name.strip()] = (float(lo_s), float(hi_s))
            except ValueError:
                problems.append(f"{part!r}: LOW and HIGH must be numbers")
    elif text is not None:
        given = {k: (float(v[0]), float(v[1])) for k, v in text.items()}
    bounds = dict(DEFAULT_BOUNDS)
    for name, (lo, hi) in given.items():
        if name not in PARAMS:
            problems.append(f"unknown parameter {name!r}; choose from {', '.join(PARAMS)}")
            continue
        if not (math.isfinite(lo) and math.isfinite(hi)):
            problems.append(f"{name}: bounds must be finite")
        elif name == "azimuth":
            if not 0 < hi - lo <= 360:
                problems.append(f"azimuth={lo:g}:{hi:g}: an arc needs 0 < HIGH - LOW <= 360 "
                                "(clockwise from LOW; -60:60 is the arc through north)")
        elif lo >= hi:
            problems.append(f"{name}={lo:g}:{hi:g}: inverted or empty bounds; LOW must be below HIGH")
        elif name == "h" and lo <= 0:
            problems.append(f"h={lo:g}:{hi:g}: heights must be above the ground (> 0 m)")
        bounds[name] = (lo, hi)
    if problems:
        raise InputError("--bounds: " + "; ".join(problems))
    return bounds


@dataclass(frozen=True)
class SearchSpace:
    """The parameters fitted for every site and their bounds.

    Points are handled in two coordinates: *values* (metres, degrees, dB, as in the
    table above) and the optimizer's unit cube ``[0, 1]^d`` (what skopt's GP sees after
    its own normalization; the dimensions given to skopt are the unit interval).
    """

    params: tuple[str, ...] = DEFAULT_PARAMS
    bounds: tuple[tuple[float, float], ...] = tuple(DEFAULT_BOUNDS[p] for p in DEFAULT_PARAMS)

    @classmethod
    def from_options(cls, params: str | Sequence[str] = DEFAULT_PARAMS,
                     bounds: str | Mapping[str, Sequence[float]] | None = None) -> SearchSpace:
        names = parse_params(params)
        b = parse_bounds(bounds)
        return cls(names, tuple(b[p] for p in names))

    @property
    def circular(self) -> tuple[int, ...]:
        """Indices of the parameters that wrap around (azimuth over the full circle)."""
        return tuple(k for k, (p, (lo, hi)) in enumerate(zip(self.params, self.bounds, strict=True))
                     if p == "azimuth" and math.isclose(hi - lo, 360.0))

    def units(self) -> dict[str, str]:
        return {p: _UNITS[p] for p in self.params}

    def dimensions(self) -> list[Any]:
        """skopt dimensions: the unit interval per parameter (values come from :meth:`to_values`)."""
        from skopt.space import Real

        return [Real(0.0, 1.0, name=p) for p in self.params]

    def to_values(self, unit: Sequence[float]) -> dict[str, float]:
        """Unit-cube point -> parameter values (azimuth in [0, 360))."""
        out = {}
        for p, (lo, hi), t in zip(self.params, self.bounds, unit, strict=True):
            v = lo + float(t) * (hi - lo)
            out[p] = v % 360.0 if p == "azimuth" else v
        return out

    def to_unit(self, values: Mapping[str, float]) -> list[float]:
        """Parameter values -> unit-cube point, clipped to the bounds (azimuth taken on its arc)."""
        out = []
        for p, (lo, hi) in zip(self.params, self.bounds, strict=True):
            v = float(values[p])
            if p == "azimuth":
                v = lo + (v - lo) % 360.0  # the representative at or after lo
                if v > hi:  # outside a partial arc: the nearer end
                    v = hi if v - hi < lo + 360.0 - v else lo
            out.append(min(max((v - lo) / (hi - lo), 0.0), 1.0))
        return out

    def contains(self, values: Mapping[str, float]) -> bool:
        """Whether ``values`` lie inside the bounds (azimuth on its arc)."""
        back = self.to_values(self.to_unit(values))
        for p in self.params:
            gap = float(values[p]) - back[p]
            if p == "azimuth":
                gap = (gap + 180.0) % 360.0 - 180.0
            if abs(gap) > 1e-9 * max(1.0, abs(float(values[p]))):
                return False
        return True

    def site_values(self, cells: pd.DataFrame, origin: Mapping[str, float]) -> dict[str, float]:
        """The current parameter values of a site's cells (``origin``: the file's x_m, y_m, power)."""
        first = cells.iloc[0]
        full = {"x": float(first["x_m"]) - origin["x_m"], "y": float(first["y_m"]) - origin["y_m"],
                "h": float(first["height_m"]), "azimuth": float(first["azimuth_deg"]) % 360.0,
                "tilt": float(first["tilt_deg"]), "power": float(first["power_dbm"]) - origin["power_dbm"]}
        return {p: full[p] for p in self.params}

    def apply(self, cells: pd.DataFrame, values: Mapping[str, float],
              origin: Mapping[str, float]) -> pd.DataFrame:
        """A copy of a site's cells (the file's rows) moved/turned to ``values``.

        ``origin`` holds the site's file position ``x_m, y_m`` and its first cell's
        ``power_dbm``; sectors keep their azimuth and power offsets from the first cell.
        """
        out = cells.copy()
        if "x" in values:
            out["x_m"] = origin["x_m"] + values["x"]
        if "y" in values:
            out["y_m"] = origin["y_m"] + values["y"]
        if "h" in values:
            out["height_m"] = values["h"]
        if "azimuth" in values:
            turn = values["azimuth"] - float(cells["azimuth_deg"].iloc[0])
            out["azimuth_deg"] = (cells["azimuth_deg"].to_numpy(np.float64) + turn) % 360.0
        if "tilt" in values:
            out["tilt_deg"] = values["tilt"]
        if "power" in values:
            out["power_dbm"] = cells["power_dbm"].to_numpy(np.float64) + values["power"]
        if {"x", "y"} & set(values):
            # lon/lat follow the scene position (the tracer takes x_m, y_m when both are present)
            out = out.drop(columns=[c for c in ("lon", "lat") if c in out.columns])
        return out


def _embed(X: np.ndarray, circular: Sequence[int]) -> np.ndarray:
    """``(n, d)`` unit coordinates -> ``(n, d + len(circular))``: each circular column becomes
    ``(cos 2πt, sin 2πt) / 2π`` appended at the end (so that the chord is ``sin(πΔ)/π``)."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    linear = [k for k in range(X.shape[1]) if k not in circular]
    cols = [X[:, linear]]
    for k in circular:
        a = 2.0 * np.pi * X[:, k]
        cols.append(np.stack([np.cos(a), np.sin(a)], axis=1) / (2.0 * np.pi))
    return np.concatenate(cols, axis=1)


class CircularMatern(Kernel):
    """Matérn kernel (a skopt kernel, so that skopt's GP can add its noise term to it) with anisotropic length scales in which some coordinates are angles of period 1.

    Parameters
    ----------
    length_scale : float or array of shape (d,)
        One length scale per input coordinate (the angular ones in turns).
    length_scale_bounds : pair of floats
        Bounds of every length scale.
    nu : float
        Matérn smoothness (2.5 as skopt's default GP).
    circular : tuple of int
        Input columns that are angles in ``[0, 1]`` (one turn).
    """

    def __init__(self, length_scale: Any = 1.0, length_scale_bounds: Any = (0.01, 100.0),
                 nu: float = 2.5, circular: tuple[int, ...] = ()):
        self.length_scale = length_scale
        self.length_scale_bounds = length_scale_bounds
        self.nu = nu
        self.circular = tuple(circular)

    @property
    def anisotropic(self) -> bool:
        return np.size(self.length_scale) > 1

    @property
    def hyperparameter_length_scale(self) -> Hyperparameter:
        n = len(self.length_scale) if self.anisotropic else 1
        return Hyperparameter("length_scale", "numeric", self.length_scale_bounds, n)

    def _expanded(self, n_features: int) -> np.ndarray:
        """Length scales in the embedded order: linear columns, then two per circular column."""
        ls = np.broadcast_to(np.atleast_1d(np.asarray(self.length_scale, np.float64)), (n_features,))
        linear = [k for k in range(n_features) if k not in self.circular]
        return np.concatenate([ls[linear], np.repeat(ls[list(self.circular)], 2)])

    def __call__(self, X: np.ndarray, Y: np.ndarray | None = None, eval_gradient: bool = False) -> Any:
        X = np.atleast_2d(X)
        n_features = X.shape[1]
        ls = self._expanded(n_features)
        inner = Matern(length_scale=ls, length_scale_bounds=self.length_scale_bounds, nu=self.nu)
        Xe = _embed(X, self.circular)
        Ye = None if Y is None else _embed(Y, self.circular)
        if not eval_gradient:
            return inner(Xe, Ye)
        if Y is not None:
            raise ValueError("gradient only for Y = None")
        K, dK = inner(Xe, None, eval_gradient=True)  # dK: [n, n, d_embedded], by log length scale
        linear = [k for k in range(n_features) if k not in self.circular]
        # the tied length scale of a circular column drives both its embedded columns: sum them
        per_input = np.zeros((*K.shape, n_features))
        for e, k in enumerate(linear):
            per_input[..., k] = dK[..., e]
        for m, k in enumerate(self.circular):
            e = len(linear) + 2 * m
            per_input[..., k] = dK[..., e] + dK[..., e + 1]
        if not self.anisotropic:
            per_input = per_input.sum(axis=-1, keepdims=True)
        if self.hyperparameter_length_scale.fixed:
            return K, np.empty((*K.shape, 0))
        return K, per_input

    def diag(self, X: np.ndarray) -> np.ndarray:
        return np.ones(np.atleast_2d(X).shape[0])

    def is_stationary(self) -> bool:
        return True

    def __repr__(self) -> str:
        return (f"CircularMatern(length_scale={np.round(np.atleast_1d(self.length_scale), 3).tolist()}, "
                f"nu={self.nu}, circular={self.circular})")


def make_estimator(space: SearchSpace, seed: int | None = None) -> Any:
    """skopt's GP surrogate (constant × Matérn 5/2, Gaussian noise, normalized targets) with
    :class:`CircularMatern` in place of skopt's Matérn, so that azimuth wraps around."""
    from skopt.learning import GaussianProcessRegressor
    from skopt.learning.gaussian_process.kernels import ConstantKernel

    d = len(space.params)
    kernel = ConstantKernel(1.0, (0.01, 1000.0)) * CircularMatern(
        length_scale=np.ones(d), length_scale_bounds=(0.01, 100.0), nu=2.5, circular=space.circular)
    return GaussianProcessRegressor(kernel=kernel, normalize_y=True, noise="gaussian",
                                    n_restarts_optimizer=2, random_state=seed)
