"""Radio materials: the mapping from OSM tags to Sionna's ITU-R P.2040 materials.

Sionna RT's ``itu-radio-material`` types are valid only inside frequency ranges
(concrete and brick from 1 GHz, the ground types up to 10 GHz ...); the tracing stage
checks the carrier against them. The mapping below is documented in ``docs/scene.md``.

:data:`SCATTERING` gives every ITU type its diffuse-scattering parameters (Sionna's
scattering coefficient ``S``, cross-polarization coefficient ``K_x`` and scattering
pattern), with the reason for each value; ``docs/trace.md`` has the table. The scene
builder writes ``S`` and ``K_x`` into ``scene.xml`` and the tracer applies the whole
table when it loads a scene (:func:`twin.radio.tracer.apply_scattering`), so scenes
built before the table existed get the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

__all__ = ["MaterialConfig", "assign_materials", "MATERIAL_BY_TAG", "ITU_TYPES", "DEFAULT_THICKNESS_M",
           "Scattering", "SCATTERING", "XPR_DB"]

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
class Scattering:
    """Diffuse-scattering parameters of one ITU material (Sionna RT's effective-roughness model).

    Attributes
    ----------
    coefficient : float
        ``S`` in [0, 1]: the scattered share of the reflected field amplitude; the
        specular reflection is reduced by ``sqrt(1 - S^2)`` (Degli-Esposti et al. 2007).
    xpd_coefficient : float
        ``K_x`` in [0, 1]: the share of the scattered power moved to the orthogonal polarization.
    pattern : str
        Sionna's scattering pattern: ``lambertian`` or ``directive`` (a lobe around the
        specular direction of width set by ``alpha_r``).
    alpha_r : int
        Directive lobe exponent (1 is broad, 10 narrow); ignored for ``lambertian``.
    reason : str
        Where the values come from.
    """

    coefficient: float
    xpd_coefficient: float
    pattern: str = "lambertian"
    alpha_r: int = 1
    reason: str = ""


# Cross-polar ratio of urban NLOS channels, 3GPP TR 38.901 Table 7.5-6 (UMa NLOS: 7 dB;
# UMa LOS 8 dB, UMi NLOS 8 dB): K_x = 1 / (1 + 10^(XPR/10)) = 0.17.
XPR_DB = 7.0
_KX = round(1.0 / (1.0 + 10 ** (XPR_DB / 10)), 2)

_FACADE = ("Degli-Esposti et al., 'Measurement and modelling of scattering from buildings', IEEE TAP 55(1), "
           "2007: S of 0.2-0.5 fitted to building walls at 1.3 GHz, the directive single-lobe model fitting "
           "better than the Lambertian one, lobe exponents of a few units; masonry facades with windows, "
           "ledges and balconies (10-50 cm structure against a 17 cm wavelength at 1.8 GHz) sit in the "
           "rough half of that range")
_SMOOTH = ("smooth panels (glass curtain walls, metal cladding): mostly specular, the scattering coming "
           "from frames and joints; the low end of Degli-Esposti et al. 2007's 0.2-0.5")
_PANEL = "light panels and boards used as outer walls (sheds, cabins): between masonry and smooth panels"
_GROUND = ("Rayleigh roughness factor rho = exp(-8 (pi sigma_h cos(theta_i) / lambda)^2), S = sqrt(1 - rho^2): "
           "sigma_h = 1 cm (asphalt, cobbles, kerbs) at 1.8 GHz and the incidence angles of 50-500 m from a "
           "40 m mast (cos theta_i 0.08-0.6) give S = 0.15-0.4; random roughness scatters without a "
           "preferred direction (Lambertian, the rough-surface limit of Degli-Esposti et al. 2007)")

# ITU type -> diffuse scattering; every type of ITU_TYPES has an entry (tested).
SCATTERING: dict[str, Scattering] = {
    **{t: Scattering(0.4, _KX, "directive", 4, _FACADE) for t in ("concrete", "brick", "marble")},
    **{t: Scattering(0.2, _KX, "directive", 4, _SMOOTH) for t in ("glass", "metal", "clear_acrylic")},
    **{t: Scattering(0.3, _KX, "directive", 4, _PANEL)
       for t in ("wood", "plasterboard", "plywood", "chipboard", "ceiling_board", "floorboard", "vinyl_tile",
                 "carpet_tile")},
    **{t: Scattering(0.2, _KX, "lambertian", 1, _GROUND)
       for t in ("very_dry_ground", "medium_dry_ground", "wet_ground", "asphalt_concrete")},
    "vacuum": Scattering(0.0, 0.0, "lambertian", 1, "no surface"),
}


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
