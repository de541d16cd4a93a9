"""Radio materials: the mapping from OSM tags to Sionna's ITU-R P.2040 materials.

Sionna RT's ``itu-radio-material`` types are valid only inside frequency ranges
(concrete and brick from 1 GHz, the ground types up to 10 GHz ...); the tracing stage
checks the carrier against them. The mapping below is documented in ``docs/scene.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

__all__ = ["MaterialConfig", "assign_materials", "MATERIAL_BY_TAG", "ITU_TYPES", "DEFAULT_THICKNESS_M"]

# Sionna RT's ITU material types (sionna/rt/radio_materials/itu.py).
ITU_TYPES = frozenset({
    "vacuum", "concrete", "brick", "plasterboard", "wood", "glass", "ceiling_board", "chipboard",
    "plywood", "marble", "floorboard", "metal", "very_dry_ground", "medium_dry_ground", "wet_ground",
    "clear_acrylic", "vinyl_tile", "carpet_tile", "asphalt_concrete",
})

# OSM `building:material` (and facade material) values to ITU types.
MATERIAL_BY_TAG: dict[str, str] = {
    "concrete": "concrete", "reinforced_concrete": "concrete", "cement_block": "concrete",
    "stone": "concrete", "sandstone": "concrete", "limestone": "concrete", "plaster": "concrete",
    "brick": "brick", "clay": "brick", "masonry": "brick", "adobe": "brick",
    "glass": "glass", "mirror": "glass",
    "metal": "metal", "steel": "metal", "aluminium": "metal", "aluminum": "metal", "copper": "metal",
    "wood": "wood", "timber_framing": "wood", "timber": "wood", "log": "wood", "bamboo": "wood",
    "marble": "marble", "granite": "marble",
    "plasterboard": "plasterboard", "plywood": "plywood", "chipboard": "chipboard",
}

# Wall and ground thickness for the ITU layer model [m].
DEFAULT_THICKNESS_M = {"concrete": 0.3, "brick": 0.25, "glass": 0.02, "metal": 0.01, "wood": 0.1,
                       "marble": 0.3, "plasterboard": 0.02, "plywood": 0.02, "chipboard": 0.02}


@dataclass(frozen=True)
class MaterialConfig:
    """Material choices.

    Attributes
    ----------
    building_default : str
        ITU type of buildings without a material tag (concrete: the dominant urban facade).
    ground : str
        ITU type of the ground plane (medium-dry ground: streets, soil and parks).
    by_building_type : dict
        Overrides per OSM ``building`` value, e.g. ``{"greenhouse": "glass"}``.
    by_material_tag : dict
        Overrides of :data:`MATERIAL_BY_TAG`.
    use_material_tags : bool
        Read ``building:material``; off gives every building ``building_default``.
    """

    building_default: str = "concrete"
    ground: str = "medium_dry_ground"
    by_building_type: dict[str, str] = field(default_factory=lambda: {"greenhouse": "glass", "hut": "wood",
                                                                       "cabin": "wood", "shed": "wood"})
    by_material_tag: dict[str, str] = field(default_factory=dict)
    use_material_tags: bool = True

    def __post_init__(self) -> None:
        from twin.errors import InputError

        named = {"building_default": self.building_default, "ground": self.ground,
                 **{f"by_building_type.{k}": v for k, v in self.by_building_type.items()},
                 **{f"by_material_tag.{k}": v for k, v in self.by_material_tag.items()}}
        for key, value in named.items():
            if value not in ITU_TYPES:
                raise InputError(f"materials: {key} = {value!r} is not an ITU material type; "
                                 f"choose one of {', '.join(sorted(ITU_TYPES))}")


def assign_materials(buildings: pd.DataFrame, config: MaterialConfig | None = None) -> list[str]:
    """The ITU material type of each building, from ``building:material`` then ``building``."""
    config = config or MaterialConfig()
    by_tag = {**MATERIAL_BY_TAG, **config.by_material_tag}
    tags = buildings["building:material"].tolist() if "building:material" in buildings.columns else [None] * len(buildings)
    kinds = buildings["building"].tolist() if "building" in buildings.columns else [None] * len(buildings)
    out = []
    for tag, kind in zip(tags, kinds, strict=True):
        material = None
        if config.use_material_tags and isinstance(tag, str):
            material = by_tag.get(tag.strip().lower())
        if material is None and isinstance(kind, str):
            material = config.by_building_type.get(kind)
        out.append(material or config.building_default)
    return out
