"""Per-patch randomization of a generation plan, for pretraining breadth (seed 000, seed 004 §9).

A plan's ``randomize`` section names what each patch draws anew: the material of the
buildings without a material tag and of the ground, each building's height scaled by
a factor in ``[1 - f, 1 + f]``, and the sites' height, downtilt and power. Every draw
comes from the patch's own seed (:func:`randomize_seed`, from the plan seed and the
shard index only), so a shard computes the same patch on any worker and on a retry;
what was drawn is written into the shard's manifest record and its corpus scene
attributes (``randomized``), so a corpus says what it was drawn from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from twin.errors import InputError

__all__ = ["RandomizeSpec", "randomize_seed", "draw_patch"]


@dataclass(frozen=True)
class RandomizeSpec:
    """What each patch draws; the defaults draw nothing.

    Attributes
    ----------
    building_materials : tuple of str
        ITU types; each patch gives its untagged buildings one of them (uniformly),
        in place of ``scene.materials.building_default``. Tagged buildings keep theirs.
    ground_materials : tuple of str
        ITU types; each patch's ground is one of them.
    height_fraction : float
        In [0, 1): each building's height (and base) is multiplied by its own factor
        drawn uniformly in ``[1 - f, 1 + f]``.
    site_height_m, tilt_deg, power_dbm : (low, high) or None
        Per patch, one value drawn uniformly in the range for all its sites
        (``deploy.height_m``, ``deploy.tilt_deg``, ``deploy.power_dbm``); not with the
        ``file`` strategy, whose BS file gives them.
    """

    building_materials: tuple[str, ...] = ()
    ground_materials: tuple[str, ...] = ()
    height_fraction: float = 0.0
    site_height_m: tuple[float, float] | None = None
    tilt_deg: tuple[float, float] | None = None
    power_dbm: tuple[float, float] | None = None

    @property
    def active(self) -> bool:
        return bool(self.building_materials or self.ground_materials or self.height_fraction
                    or self.site_height_m or self.tilt_deg or self.power_dbm)

    def problems(self, strategy: str) -> list[str]:
        """Plan-check messages ``randomize.<key>: ...`` (empty when fine)."""
        from twin.scene.materials import ITU_TYPES

        out = []
        for key in ("building_materials", "ground_materials"):
            bad = [m for m in getattr(self, key) if m not in ITU_TYPES]
            if bad:
                out.append(f"randomize.{key}: {', '.join(map(repr, bad))} not ITU material type(s); choose from "
                           f"{', '.join(sorted(ITU_TYPES))}")
        if not 0.0 <= self.height_fraction < 1.0:
            out.append(f"randomize.height_fraction: {self.height_fraction} must be in [0, 1)")
        limits = {"site_height_m": (1.0, 500.0), "tilt_deg": (-90.0, 90.0), "power_dbm": (-30.0, 80.0)}
        for key, (lo_ok, hi_ok) in limits.items():
            value = getattr(self, key)
            if value is None:
                continue
            lo, hi = value
            if not lo_ok <= lo <= hi <= hi_ok:
                out.append(f"randomize.{key}: [{lo}, {hi}] must be an increasing range within [{lo_ok}, {hi_ok}]")
            if strategy == "file":
                out.append(f"randomize.{key}: the 'file' strategy takes the sites from its BS file; remove it")
        return out


def randomize_seed(plan_seed: int, shard_index: int) -> int:
    """The seed of a patch's draws: from ``SeedSequence([plan_seed, shard_index, 1])`` only."""
    return int(np.random.SeedSequence([int(plan_seed), int(shard_index), 1]).generate_state(1)[0]) & 0x7FFFFFFF


def draw_patch(spec: RandomizeSpec, seed: int, scene_config: Any, deploy_config: Any) -> tuple[Any, Any, dict]:
    """One patch's draw: ``(SceneConfig, DeployConfig, record)``.

    ``record`` (JSON-able) lists what was drawn, with the seed: ``building_material``,
    ``ground_material``, ``height_fraction`` and ``height_seed``, ``site_height_m``,
    ``tilt_deg``, ``power_dbm``; empty when ``spec`` draws nothing (the configs are
    returned unchanged).
    """
    if not spec.active:
        return scene_config, deploy_config, {}
    rng = np.random.default_rng(seed)
    record: dict[str, Any] = {"seed": int(seed)}
    materials = scene_config.materials
    if spec.building_materials:
        record["building_material"] = str(rng.choice(list(spec.building_materials)))
        materials = replace(materials, building_default=record["building_material"])
    if spec.ground_materials:
        record["ground_material"] = str(rng.choice(list(spec.ground_materials)))
        materials = replace(materials, ground=record["ground_material"])
    heights = scene_config.heights
    if spec.height_fraction:
        record["height_fraction"] = float(spec.height_fraction)
        record["height_seed"] = int(rng.integers(0, 2**31 - 1))
        heights = replace(heights, jitter_fraction=spec.height_fraction, jitter_seed=record["height_seed"])
    site: dict[str, float] = {}
    for key, field in (("site_height_m", "height_m"), ("tilt_deg", "tilt_deg"), ("power_dbm", "power_dbm")):
        value = getattr(spec, key)
        if value is not None:
            site[field] = record[key] = round(float(rng.uniform(*value)), 3)
    try:
        scene_config = replace(scene_config, materials=materials, heights=heights)
        deploy_config = replace(deploy_config, **site)
    except InputError as err:  # a drawn value the configs refuse: name the section
        raise InputError(f"randomize: {err}") from None
    return scene_config, deploy_config, record
