"""Building heights from OSM tags, with documented fallbacks (see ``docs/scene.md``).

Order of sources for the roof height above ground:

1. ``height`` (units parsed: ``"12"``, ``"12 m"``, ``"12,5"``, ``"40 ft"``, ``"40'"``,
   ``"12;15"`` takes the largest value);
2. ``building:levels`` × ``level_height_m`` plus ``roof:levels`` × ``roof_level_height_m``;
3. a default per ``building`` type (:data:`DEFAULT_TYPE_HEIGHTS_M`), else ``default_height_m``.

The base (``min_height_m``) is ``min_height`` or ``building:min_level`` × ``level_height_m``
(building parts that start above ground, e.g. bridges between buildings), else 0.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from twin.errors import collect

__all__ = ["HeightConfig", "parse_height_m", "parse_levels", "estimate_heights", "DEFAULT_TYPE_HEIGHTS_M",
           "HEIGHT_SOURCES"]

HEIGHT_SOURCES = ("height_tag", "levels", "type_default", "default")

# Typical heights where OSM has neither height nor levels. Residential 4-storey blocks dominate
# European city centres; sheds and garages are single storey; churches are tall.
DEFAULT_TYPE_HEIGHTS_M: dict[str, float] = {
    "house": 7.0, "detached": 7.0, "semidetached_house": 7.0, "terrace": 9.0, "residential": 12.0,
    "apartments": 15.0, "office": 18.0, "commercial": 12.0, "retail": 8.0, "industrial": 10.0,
    "warehouse": 10.0, "church": 20.0, "cathedral": 30.0, "public": 15.0, "civic": 15.0,
    "school": 12.0, "university": 15.0, "hospital": 18.0, "hotel": 18.0, "train_station": 12.0,
    "garage": 3.0, "garages": 3.0, "shed": 3.0, "hut": 3.0, "kiosk": 3.0, "roof": 4.0,
    "carport": 3.0, "service": 4.0, "transformer_tower": 6.0,
}

_FEET = 0.3048
_NUMBER = re.compile(r"^\s*([-+]?\d+(?:[.,]\d+)?)\s*(m|meters?|metres?|ft|feet|foot|'|)\s*$", re.IGNORECASE)
_FEET_INCHES = re.compile(r"^\s*(\d+)\s*'\s*(\d+(?:\.\d+)?)\s*\"\s*$")


@dataclass(frozen=True)
class HeightConfig:
    """Height heuristics.

    Attributes
    ----------
    level_height_m : float
        Storey height for ``building:levels`` (3 m: the common residential storey).
    roof_level_height_m : float
        Height per ``roof:levels`` storey (a pitched-roof attic is about as tall as a storey).
    default_height_m : float
        Height of a building of unknown type with no tags: 12 m, a 4-storey block (the median
        of level-tagged buildings in central Helsinki is 15 m; suburbs are lower).
    type_heights_m : dict
        Defaults per OSM ``building`` value; merged over :data:`DEFAULT_TYPE_HEIGHTS_M`.
    min_building_height_m : float
        Heights below this (bad tags such as "0.5") are raised to it.
    jitter_fraction, jitter_seed : float, int
        Randomization (``twin generate``'s ``randomize.height_fraction``): each building's
        height and base are multiplied by its own factor drawn uniformly in
        ``[1 - jitter_fraction, 1 + jitter_fraction]`` from ``jitter_seed``; 0 (default) keeps them.
    """

    level_height_m: float = 3.0
    roof_level_height_m: float = 3.0
    default_height_m: float = 12.0
    type_heights_m: dict[str, float] = field(default_factory=dict)
    min_building_height_m: float = 2.0
    jitter_fraction: float = 0.0
    jitter_seed: int = 0

    def __post_init__(self) -> None:
        problems = [f"{name}: {getattr(self, name)} must be > 0"
                    for name in ("level_height_m", "roof_level_height_m", "default_height_m", "min_building_height_m")
                    if not getattr(self, name) > 0]
        if not 0.0 <= self.jitter_fraction < 1.0:
            problems.append(f"jitter_fraction: {self.jitter_fraction} must be in [0, 1)")
        problems += [f"type_heights_m.{k}: {v} must be > 0" for k, v in self.type_heights_m.items() if not v > 0]
        collect(problems, "heights config")


def parse_height_m(value: object) -> float | None:
    """A height tag in metres, or None if it cannot be read.

    ``"12"``, ``"12 m"``, ``"12,5"`` → 12 / 12.5; ``"40 ft"``, ``"40'"`` → 12.19;
    ``"10'6\\""`` → 3.2; ``"12;15"`` → 15 (the tallest of several values).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 0 and math.isfinite(value) else None
    best: float | None = None
    for part in str(value).split(";"):
        match = _NUMBER.match(part)
        if match:
            number = float(match.group(1).replace(",", "."))
            unit = match.group(2).lower()
            metres = number * _FEET if unit in ("ft", "feet", "foot", "'") else number
        else:
            match = _FEET_INCHES.match(part)
            if not match:
                continue
            metres = (float(match.group(1)) + float(match.group(2)) / 12) * _FEET
        if metres > 0 and math.isfinite(metres):
            best = metres if best is None else max(best, metres)
    return best


def parse_levels(value: object) -> float | None:
    """A ``building:levels``-style count (``"4"``, ``"3.5"``, ``"4;6"`` → 6), or None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    best: float | None = None
    for part in str(value).replace(",", ".").split(";"):
        try:
            levels = float(part.strip())
        except ValueError:
            continue
        if levels >= 0 and math.isfinite(levels):
            best = levels if best is None else max(best, levels)
    return best


def estimate_heights(buildings: pd.DataFrame, config: HeightConfig | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Roof height [m], base height [m] and the source name of each building.

    Parameters
    ----------
    buildings : DataFrame
        With the OSM tag columns of :data:`twin.scene.osm.BUILDING_TAGS`.

    Returns
    -------
    height_m, min_height_m : ndarray, shape (N,)
        Roof and base above ground [m]; ``height_m > min_height_m`` always.
    source : ndarray of str, shape (N,)
        One of :data:`HEIGHT_SOURCES` per building.
    """
    config = config or HeightConfig()
    types = {**DEFAULT_TYPE_HEIGHTS_M, **config.type_heights_m}
    n = len(buildings)
    height = np.empty(n)
    base = np.zeros(n)
    source = np.empty(n, dtype=object)

    def column(name: str) -> list:
        return buildings[name].tolist() if name in buildings.columns else [None] * n

    tags = zip(column("height"), column("building:levels"), column("roof:levels"), column("building"),
               column("min_height"), column("building:min_level"), strict=True)
    for k, (h_tag, levels, roof_levels, kind, min_h, min_level) in enumerate(tags):
        h = parse_height_m(h_tag)
        n_levels = parse_levels(levels)
        if h is not None:
            height[k], source[k] = h, "height_tag"
        elif n_levels is not None and n_levels > 0:
            n_roof = parse_levels(roof_levels) or 0.0
            height[k] = n_levels * config.level_height_m + n_roof * config.roof_level_height_m
            source[k] = "levels"
        elif isinstance(kind, str) and kind in types:
            height[k], source[k] = types[kind], "type_default"
        else:
            height[k], source[k] = config.default_height_m, "default"
        b = parse_height_m(min_h)
        if b is None:
            lv = parse_levels(min_level)
            b = lv * config.level_height_m if lv is not None else 0.0
        base[k] = b
    if config.jitter_fraction:
        factor = np.random.default_rng(config.jitter_seed).uniform(
            1.0 - config.jitter_fraction, 1.0 + config.jitter_fraction, n)
        height, base = height * factor, base * factor
    height = np.maximum(height, config.min_building_height_m)
    # A base at or above the roof is a tagging error: keep the building on the ground.
    bad_base = base >= height - 0.5
    base[bad_base] = 0.0
    return height, base, source.astype(str)
