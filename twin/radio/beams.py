"""NR SSB beams: each cell's beam sweep as a steered uniform linear array (``twin trace --beams N``).

An NR cell transmits its SS/PBCH blocks (SSBs) in a sweep of ``L`` beams, one SSB index
per beam (TS 38.213 §4.1: at most ``L_max`` = 4 SSBs below 3 GHz, 8 from 3 to 6 GHz,
64 in FR2, see :func:`max_ssb_beams`). The UE measures each SSB's L1-RSRP and reports
the strongest index; the network serves it on that beam.

Model (docs/trace.md § SSB beams): each sector antenna is a horizontal uniform linear
array of ``N`` elements (Sionna's ``PlanarArray(1, N)``, λ/2 apart, the cell's element
pattern, e.g. the 3GPP TR 38.901 one) with a half-bin-shifted DFT codebook of ``N``
beams. Beam ``b`` steers to the horizontal offset ``δ_b`` clockwise from the boresight
with ``sin δ_b = (2b - N + 1) / N``: the beams are symmetric about the boresight,
``δ`` = ±14.5°, ±48.6° for 4 beams and ±7.2°, ±22.0°, ±38.7°, ±61.0° for 8,
so they tile a 120° sector. The codebook is unitary (its beams are orthogonal), which
makes the sweep conserve power: in every direction the mean over the beams of the
beam's power gain equals the single element's. Hence at every pixel the mean of the
beam maps is the wide-beam (single-element) map traced with the same rays, and the
best beam is at least as strong (array gain, up to ``10 log10 N`` dB at a beam's
peak). Each beam is traced by Sionna RT's ``RadioMapSolver`` as a transmitter with
that array and the beam's precoding vector (a synthetic array: the element pattern
times the steered array factor, path by path), so reflections, scattering and
shadowing see the beam pattern.

Beam indices count clockwise (seen from above): beam 0 is the leftmost seen from the
antenna, beam ``N - 1`` the rightmost.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MAX_BEAMS", "max_ssb_beams", "beam_offsets_deg", "beam_azimuths_deg", "element_positions",
           "precoding_vectors", "array_power_gain", "beam_attrs"]

#: FR2's ``L_max``: the most SSB beams a cell can sweep
MAX_BEAMS = 64


def max_ssb_beams(frequency_hz: float) -> int:
    """``L_max``, the most SSB beams of a cell at a carrier (TS 38.213 §4.1): 4, 8 (3-6 GHz) or 64 (FR2)."""
    if frequency_hz <= 3e9:
        return 4
    if frequency_hz <= 6e9:
        return 8
    return 64


def beam_offsets_deg(n_beams: int) -> np.ndarray:
    """Steering offsets ``(n_beams,)`` [deg] clockwise from the boresight: ``asin((2b - N + 1) / N)``."""
    b = np.arange(n_beams, dtype=np.float64)
    return np.degrees(np.arcsin((2 * b - n_beams + 1) / n_beams))


def beam_azimuths_deg(azimuth_deg: float, n_beams: int) -> np.ndarray:
    """Compass azimuth [deg, 0-360] of each beam's steering direction ``(n_beams,)`` for a sector's boresight."""
    return np.mod(azimuth_deg + beam_offsets_deg(n_beams), 360.0)


def element_positions(n_elements: int) -> np.ndarray:
    """The elements' positions along the antenna's local +y axis [wavelengths] ``(n,)``, as Sionna's
    ``PlanarArray(num_rows=1, num_cols=n, horizontal_spacing=0.5)`` places them (centred, λ/2 apart).

    Local +y points 90° counter-clockwise from the boresight (Sionna's ``Rz(α)`` turns +x
    to the boresight and +y with it).
    """
    return 0.5 * np.arange(n_elements) - (n_elements - 1) * 0.25


def precoding_vectors(n_beams: int) -> np.ndarray:
    """The DFT codebook ``(n_beams, n_elements = n_beams)`` complex: row ``b`` steers beam ``b``.

    Sionna's synthetic array gives antenna ``k`` the phase ``exp(+j 2π r̂·d_k / λ)`` for a
    departure direction ``r̂`` and applies the precoding without conjugation, so the
    weights ``exp(-j 2π y_k sin φ_b) / sqrt(N)`` (``y_k`` in wavelengths, ``φ_b = -δ_b``
    the counter-clockwise local azimuth) add up in phase towards beam ``b``.
    Rows are orthonormal (tested).
    """
    y = element_positions(n_beams)
    sin_phi = -np.sin(np.radians(beam_offsets_deg(n_beams)))
    return np.exp(-2j * np.pi * sin_phi[:, None] * y[None, :]) / math.sqrt(n_beams)


def array_power_gain(n_beams: int, offset_deg: np.ndarray) -> np.ndarray:
    """Each beam's array-factor power gain ``(n_beams, *offset.shape)`` at horizontal offsets [deg]
    clockwise from the boresight (in the antenna's horizontal plane; the element pattern excluded).

    ``N`` at a beam's own direction; the mean over the beams is 1 in every direction.
    """
    offset = np.asarray(offset_deg, np.float64)
    y = element_positions(n_beams)
    sin_phi = -np.sin(np.radians(offset))
    steer = np.exp(2j * np.pi * sin_phi[..., None] * y)              # [..., N]
    af = np.tensordot(steer, precoding_vectors(n_beams), axes=([-1], [-1]))  # [..., B]
    return np.moveaxis(np.abs(af) ** 2, -1, 0)


def beam_attrs(sites: pd.DataFrame, n_beams: int) -> dict[str, Any]:
    """The maps store's ``beams`` attribute: the codebook and each cell's beam azimuths (JSON-able)."""
    return {
        "n_beams": int(n_beams),
        "array": {"rows": 1, "columns": int(n_beams), "spacing_wavelengths": 0.5, "polarization": "V"},
        "codebook": "dft: sin(offset_b) = (2b - N + 1) / N, clockwise from the boresight",
        "offsets_deg": [round(float(v), 4) for v in beam_offsets_deg(n_beams)],
        "azimuth_deg": [[round(float(v), 4) for v in beam_azimuths_deg(float(az), n_beams)]
                        for az in sites["azimuth_deg"]],
    }
