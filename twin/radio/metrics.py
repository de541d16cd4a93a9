"""Radio metrics from traced path gain: RSRP, RSSI, RSRQ, SINR, SNR, serving cell, BLER, throughput.

The formulas, units and defaults are written out in ``docs/metrics.md``. In short, for
cell ``c`` with total transmit power ``P_c`` [dBm] spread evenly over ``n_re = n_rb * 12``
subcarriers, path gain ``G_c`` [dB] (antenna gains included), carrier set ``K(c)`` (the
cells on ``c``'s frequency), load ``rho`` and noise ``N = k T B NF`` over the measured
bandwidth ``B = n_rb * 12 * scs``::

    S_c    = P_c + G_c                                   received power over B [dBm]
    RSRP_c = S_c - 10 log10(n_re)                        per resource element [dBm]
    RSSI_c = 10 log10(sum_{j in K(c)} rho S_j + N)       [dBm]
    RSRQ_c = 10 log10(n_rb) + RSRP_c - RSSI_c            [dB]
    SINR_c = S_c / (sum_{j in K(c), j != c} rho S_j + N) [dB]
    SNR_c  = S_c / N                                     [dB]

BLER and throughput of the serving cell (strongest RSRP) come from ``sionna.sys``: the
inner-loop link adaptation picks the highest MCS whose transport-block BLER from Sionna's
bundled tables stays below the target at that SINR, and ``PHYAbstraction`` gives the TBLER
at that MCS; throughput is ``(1 - TBLER) * TBS / T_slot``.

``apply_reporting`` turns exact values into what a UE reports: log-normal measurement noise,
a sensitivity floor, 3GPP reporting ranges and quantization.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from twin.errors import InputError

__all__ = [
    "MetricConfig", "compute_metrics", "link_performance", "noise_power_dbm", "re_power_dbm",
    "ReportingConfig", "apply_reporting",
    "PER_CELL_KEYS", "MAP_KEYS", "METRIC_UNITS",
]

BOLTZMANN_J_PER_K = 1.380649e-23

#: Keys of :func:`compute_metrics` with shape ``(n_cells, H, W)``: each cell taken as the serving one.
PER_CELL_KEYS = ("path_gain_db", "rsrp_dbm", "rsrq_db", "sinr_db", "snr_db", "cell_rssi_dbm")
#: Keys of :func:`compute_metrics` with shape ``(H, W)``: the serving cell's values.
MAP_KEYS = ("rssi_dbm", "serving_cell", "bler", "throughput_bps")
METRIC_UNITS = {
    "path_gain_db": "dB", "rsrp_dbm": "dBm", "rsrq_db": "dB", "sinr_db": "dB", "snr_db": "dB",
    "cell_rssi_dbm": "dBm", "rssi_dbm": "dBm", "serving_cell": "index", "bler": "1",
    "throughput_bps": "bit/s",
}

# NR numerologies: subcarrier spacing 15 kHz * 2^mu, slot 1 ms / 2^mu (TS 38.211 4.2).
_NUMEROLOGIES = {15e3 * 2**mu: mu for mu in range(7)}
# Sionna's bundled BLER tables, (category, 38.214 MCS table index) -> file.
_BLER_TABLES = {("pusch", 1): "PUSCH_table1.json", ("pusch", 2): "PUSCH_table2.json",
                ("pdsch", 1): "PDSCH_table1.json", ("pdsch", 2): "PDSCH_table2.json",
                ("pdsch", 3): "PDSCH_table3.json", ("pdsch", 4): "PDSCH_table4.json"}


@dataclass(frozen=True)
class MetricConfig:
    """Numerology, receiver and link-abstraction settings of :func:`compute_metrics`.

    Load from YAML with ``twin.config.load_yaml(MetricConfig, path, section="metrics")``.

    Parameters
    ----------
    n_rb : int
        Resource blocks of the carrier, all measured. 84 is seed 004's numerology
        (84 RB x 12 = 1,008 resource elements); set 1 for NB-IoT (one 180 kHz RB).
    subcarriers_per_rb : int
        12 in LTE and NR (TS 38.211 4.4.4.1).
    subcarrier_spacing_hz : float
        15 kHz: LTE's only spacing and NR numerology 0, the sub-3 GHz band of seed 004.
        Must be 15 kHz * 2^mu; sets the slot duration 1 ms / 2^mu.
    noise_figure_db : float
        UE receiver noise figure. 7 dB is the usual 3GPP UE assumption for
        system-level studies (TR 38.901 / TR 36.814 evaluation tables use 7-9 dB).
    temperature_k : float
        Noise temperature; 290 K gives the familiar -174 dBm/Hz.
    load : float
        Fraction of resource elements on which every cell radiates during the
        measurement, in (0, 1]. 1 (full buffer) is the worst case and what seed 004's
        code implies; it applies to the RSSI and to the interference in SINR, never to
        RSRP (reference signals are always on).
    carrier_tolerance_hz : float
        Cells whose frequencies differ by at most this share a carrier and interfere;
        cells on other carriers never do. 1 Hz: frequencies are compared as written.
    link_channel : {"pdsch", "pusch"}
        Which of Sionna's bundled BLER table families to use; downlink by default,
        since the maps are of what the UE receives.
    mcs_table_index : int
        TS 38.214 MCS table. 1 (up to 64-QAM) is the PDSCH default table, and its
        bundled BLER curves reach MCS 28 within their 20 dB range; table 2 (256-QAM)
        never reaches its top MCS inside the bundled curves.
    bler_target : float
        Link adaptation picks the highest MCS whose transport-block BLER does not exceed
        this; 10 % is the conventional first-transmission target (Sionna's default too).
    pdsch_symbols_per_slot : int
        OFDM symbols of the data channel per slot: 12 = 14 minus a 2-symbol control region.
    dmrs_re_per_rb : int
        DMRS resource elements per RB per slot (one front-loaded type-1 DMRS symbol: 12).
    overhead_re_per_rb : int
        Further overhead per RB per slot, 3GPP's N_oh^PRB (0 by default, as in 38.214).
    num_layers : int
        MIMO layers; 1 because the radio maps are traced for single-antenna links.
    """

    n_rb: int = 84
    subcarriers_per_rb: int = 12
    subcarrier_spacing_hz: float = 15e3
    noise_figure_db: float = 7.0
    temperature_k: float = 290.0
    load: float = 1.0
    carrier_tolerance_hz: float = 1.0
    link_channel: Literal["pdsch", "pusch"] = "pdsch"
    mcs_table_index: int = 1
    bler_target: float = 0.1
    pdsch_symbols_per_slot: int = 12
    dmrs_re_per_rb: int = 12
    overhead_re_per_rb: int = 0
    num_layers: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.n_rb < 1 or self.n_rb > 275:
            problems.append(f"n_rb: {self.n_rb} is outside [1, 275]")
        if self.subcarriers_per_rb < 1:
            problems.append(f"subcarriers_per_rb: {self.subcarriers_per_rb} must be positive")
        if self.subcarrier_spacing_hz not in _NUMEROLOGIES:
            problems.append(f"subcarrier_spacing_hz: {self.subcarrier_spacing_hz} is not 15 kHz * 2^mu "
                            f"(one of {sorted(_NUMEROLOGIES)})")
        if self.temperature_k <= 0:
            problems.append(f"temperature_k: {self.temperature_k} must be positive")
        if not 0 < self.load <= 1:
            problems.append(f"load: {self.load} is outside (0, 1]")
        if self.carrier_tolerance_hz < 0:
            problems.append(f"carrier_tolerance_hz: {self.carrier_tolerance_hz} must be >= 0")
        if (self.link_channel, self.mcs_table_index) not in _BLER_TABLES:
            problems.append(f"link_channel/mcs_table_index: sionna.sys has no BLER table for "
                            f"{self.link_channel} table {self.mcs_table_index} "
                            f"(available: {sorted(_BLER_TABLES)})")
        if not 0 < self.bler_target < 1:
            problems.append(f"bler_target: {self.bler_target} is outside (0, 1)")
        if not 1 <= self.pdsch_symbols_per_slot <= 14:
            problems.append(f"pdsch_symbols_per_slot: {self.pdsch_symbols_per_slot} is outside [1, 14]")
        if self.data_re_per_rb < 1:
            problems.append("dmrs_re_per_rb + overhead_re_per_rb leave no data resource elements")
        if not 1 <= self.num_layers <= 4:
            problems.append(f"num_layers: {self.num_layers} is outside [1, 4]")
        if problems:
            raise InputError("MetricConfig: " + "; ".join(problems))

    @property
    def n_re(self) -> int:
        """Resource elements (subcarriers) over which RSRP divides the power: 1,008 by default."""
        return self.n_rb * self.subcarriers_per_rb

    @property
    def measurement_bandwidth_hz(self) -> float:
        """Bandwidth of RSSI, SINR and noise [Hz]: ``n_rb * 12 * scs`` (15.12 MHz by default)."""
        return self.n_re * self.subcarrier_spacing_hz

    @property
    def slot_duration_s(self) -> float:
        """1 ms / 2^mu [s]."""
        return 1e-3 / 2 ** _NUMEROLOGIES[self.subcarrier_spacing_hz]

    @property
    def data_re_per_rb(self) -> int:
        """TS 38.214 5.1.3.2 N'_RE = 12 N_symb - N_DMRS - N_oh, capped at 156, per RB per slot."""
        raw = (self.subcarriers_per_rb * self.pdsch_symbols_per_slot
               - self.dmrs_re_per_rb - self.overhead_re_per_rb)
        return min(156, raw)

    @property
    def data_re_per_slot(self) -> int:
        """Resource elements carrying data per slot over all RBs and layers (11,088 by default)."""
        return self.data_re_per_rb * self.n_rb * self.num_layers


def noise_power_dbm(config: MetricConfig) -> float:
    """Thermal noise over the measured bandwidth plus the noise figure, ``10 log10(k T B) + 30 + NF`` [dBm]."""
    ktb_w = BOLTZMANN_J_PER_K * config.temperature_k * config.measurement_bandwidth_hz
    return 10.0 * math.log10(ktb_w) + 30.0 + config.noise_figure_db


def _carrier_groups(frequency_hz: np.ndarray, tolerance_hz: float) -> np.ndarray:
    """Carrier index of each cell: frequencies within ``tolerance_hz`` of a sorted neighbour chain share one."""
    order = np.argsort(frequency_hz, kind="stable")
    new = np.concatenate([[True], np.diff(frequency_hz[order]) > tolerance_hz])
    groups = np.empty(len(frequency_hz), np.intp)
    groups[order] = np.cumsum(new) - 1
    return groups


def _check_inputs(path_gain_db: Any, power_dbm: Any, frequency_hz: Any) -> tuple[np.ndarray, ...]:
    pg = np.asarray(path_gain_db, dtype=np.float64)
    power = np.asarray(power_dbm, dtype=np.float64)
    freq = np.asarray(frequency_hz, dtype=np.float64)
    problems = []
    if pg.ndim != 3:
        problems.append(f"path_gain_db: expected shape (n_cells, H, W), got {pg.shape}")
    n = pg.shape[0] if pg.ndim == 3 else None
    for name, arr in (("power_dbm", power), ("frequency_hz", freq)):
        if arr.shape != (n,):
            problems.append(f"{name}: expected shape ({n},) (one per cell), got {arr.shape}")
        elif not np.all(np.isfinite(arr)):
            problems.append(f"{name}: cell(s) {np.flatnonzero(~np.isfinite(arr)).tolist()} not finite")
    if freq.shape == (n,) and np.any(freq <= 0):
        problems.append(f"frequency_hz: cell(s) {np.flatnonzero(freq <= 0).tolist()} not positive")
    if pg.ndim == 3 and np.any(pg == np.inf):
        problems.append("path_gain_db: +inf values (use NaN or -inf where a cell is not received)")
    if problems:
        raise InputError("compute_metrics: " + "; ".join(problems))
    return pg, power, freq


def re_power_dbm(power_dbm: np.ndarray, config: MetricConfig | None = None) -> np.ndarray:
    """Transmit power per resource element [dBm] ``(n_cells,)``: the carrier power over ``n_re``.

    RSRP is this plus the path gain (the reference signals, SSBs included, are sent at
    the average energy per resource element).
    """
    config = config or MetricConfig()
    return np.asarray(power_dbm, np.float64) - 10.0 * math.log10(config.n_re)


def compute_metrics(path_gain_db: np.ndarray, power_dbm: np.ndarray, frequency_hz: np.ndarray,
                    config: MetricConfig | None = None) -> dict[str, np.ndarray]:
    """Every cell's RSRP/RSSI/RSRQ/SINR/SNR maps and the serving cell's BLER and throughput.

    Parameters
    ----------
    path_gain_db : array (n_cells, H, W)
        Path gain of each cell [dB], antenna gains included (Sionna ``RadioMapSolver``'s
        ``path_gain`` in dB); NaN or -inf where the cell is not received.
    power_dbm : array (n_cells,)
        Total transmit power of each cell over its carrier [dBm].
    frequency_hz : array (n_cells,)
        Carrier frequency of each cell [Hz]; only cells on the same carrier interfere.
    config : MetricConfig, optional
        Numerology and receiver; seed 004's (84 RB, 15 kHz, NF 7 dB) by default.

    Returns
    -------
    dict of str to ndarray
        ``(n_cells, H, W)`` float32, each cell taken as the serving one, NaN where the
        cell is not received: ``path_gain_db`` [dB], ``rsrp_dbm`` [dBm], ``rsrq_db`` [dB],
        ``sinr_db`` [dB], ``snr_db`` [dB], ``cell_rssi_dbm`` [dBm] (the RSSI of the cell's
        carrier; cells on one carrier share it).
        ``(H, W)``: ``rssi_dbm`` float32 [dBm] at the serving cell's carrier,
        ``serving_cell`` int16 (index along the first axis of the inputs; the strongest
        RSRP; -1 where no cell is received), ``bler`` float32 (transport-block BLER of
        the serving link at the MCS link adaptation picks; NaN without a serving cell),
        ``throughput_bps`` float32 [bit/s] (0 without a serving cell).

    Raises
    ------
    InputError
        Shapes that disagree, non-finite powers or frequencies, +inf path gain.
    """
    config = config or MetricConfig()
    pg, power, freq = _check_inputs(path_gain_db, power_dbm, frequency_hz)
    n_cells, height, width = pg.shape
    if n_cells == 0:  # a patch without cells: nothing received anywhere
        empty = np.zeros((0, height, width), np.float32)
        return {**{key: empty.copy() for key in PER_CELL_KEYS},
                "rssi_dbm": np.full((height, width), np.nan, np.float32),
                "serving_cell": np.full((height, width), -1, np.int16),
                "bler": np.full((height, width), np.nan, np.float32),
                "throughput_bps": np.zeros((height, width), np.float32)}
    received = np.isfinite(pg)  # [C, H, W]
    pg_filled = np.where(received, pg, -np.inf)

    rx_dbm = power[:, None, None] + pg_filled  # [C, H, W] power over B
    rx_mw = np.power(10.0, rx_dbm / 10.0)  # 0 where not received
    noise_mw = 10.0 ** (noise_power_dbm(config) / 10.0)

    groups = _carrier_groups(freq, config.carrier_tolerance_hz)
    carrier_mw = np.zeros((groups.max() + 1, height, width))  # [K, H, W]
    np.add.at(carrier_mw, groups, rx_mw)
    same_carrier_mw = carrier_mw[groups]  # [C, H, W]
    # Subtracting the own cell from its carrier's sum is exact when it is alone (x - x == 0),
    # which makes SINR == SNR bit for bit for a lone cell.
    interference_mw = config.load * (same_carrier_mw - rx_mw)
    rssi_mw = config.load * same_carrier_mw + noise_mw

    with np.errstate(divide="ignore"):
        rsrp_dbm = re_power_dbm(power, config)[:, None, None] + pg_filled
        cell_rssi_dbm = 10.0 * np.log10(rssi_mw)
        sinr_db = 10.0 * np.log10(rx_mw / (interference_mw + noise_mw))
        snr_db = rx_dbm - 10.0 * math.log10(noise_mw)
    rsrq_db = 10.0 * np.log10(config.n_rb) + rsrp_dbm - cell_rssi_dbm

    def per_cell(values: np.ndarray) -> np.ndarray:
        return np.where(received, values, np.nan).astype(np.float32)

    out = {"path_gain_db": per_cell(pg), "rsrp_dbm": per_cell(rsrp_dbm), "rsrq_db": per_cell(rsrq_db),
           "sinr_db": per_cell(sinr_db), "snr_db": per_cell(snr_db),
           "cell_rssi_dbm": per_cell(cell_rssi_dbm)}

    any_cell = received.any(axis=0)  # [H, W]
    serving = np.where(any_cell, np.argmax(np.where(received, rsrp_dbm, -np.inf), axis=0), -1)
    take = np.maximum(serving, 0)[None]  # [1, H, W]
    serving_rssi = np.take_along_axis(cell_rssi_dbm, take, 0)[0]
    serving_sinr = np.take_along_axis(sinr_db, take, 0)[0]
    out["rssi_dbm"] = np.where(any_cell, serving_rssi, np.nan).astype(np.float32)
    out["serving_cell"] = serving.astype(np.int16)

    link = link_performance(np.where(any_cell, serving_sinr, np.nan), config)
    out["bler"] = link["bler"]
    out["throughput_bps"] = np.where(any_cell, link["throughput_bps"], 0.0).astype(np.float32)
    return out


# ----------------------------------------------------------------------------------------------
# Link abstraction through sionna.sys
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _sionna_link(link_channel: str, mcs_table_index: int, bler_target: float) -> tuple[Any, Any]:
    """A ``PHYAbstraction`` holding only the one bundled table needed, and its link adaptation.

    Loading one table file instead of all six cuts the start-up interpolation; sionna is
    imported here so that ``import twin.radio.metrics`` stays light.
    """
    import sionna.sys
    from sionna.sys import InnerLoopLinkAdaptation, PHYAbstraction

    path = os.path.join(os.path.dirname(sionna.sys.__file__), "bler_tables",
                        _BLER_TABLES[(link_channel, mcs_table_index)])
    phy = PHYAbstraction(load_bler_tables_from=[path], device="cpu")
    illa = InnerLoopLinkAdaptation(phy, bler_target=bler_target, device="cpu")
    return phy, illa


def link_performance(sinr_db: np.ndarray, config: MetricConfig | None = None) -> dict[str, np.ndarray]:
    """MCS, transport-block BLER and throughput at a wideband SINR, from ``sionna.sys``.

    The radio map gives one average SINR per point, so the link is taken as flat: that
    SINR is the effective SINR of Sionna's EESM. ``InnerLoopLinkAdaptation`` picks the
    highest MCS whose TBLER from the bundled table does not exceed ``config.bler_target``
    (the lowest available MCS when none does), ``PHYAbstraction`` gives the TBLER at that
    MCS, and ``TransportBlockNR`` the transport-block size TBS [bit] of a slot with
    ``config.data_re_per_slot`` data resource elements::

        throughput_bps = (1 - TBLER) * TBS / slot_duration_s

    the expected goodput of a full-buffer user given every slot, first transmissions only.

    Sionna looks BLER up on a 0.1 dB SINR grid (clamped to its [-5, 30] dB range), rounding
    each SINR to the nearest grid point; this function calls Sionna once per distinct grid
    point present in the input and scatters the results, which is exactly what a call on
    every point would return, at a fraction of the cost.

    Parameters
    ----------
    sinr_db : array (...)
        SINR [dB]; NaN where there is no link.
    config : MetricConfig, optional

    Returns
    -------
    dict of str to ndarray, each shaped like ``sinr_db``
        ``mcs_index`` int16 (-1 where NaN), ``bler`` float32 (TBLER; NaN where NaN),
        ``throughput_bps`` float32 [bit/s] (NaN where NaN), ``tbs_bits`` int32 (0 where NaN).
    """
    import torch
    from sionna.phy.nr.utils import MCSDecoderNR, TransportBlockNR
    from sionna.phy.utils import db_to_lin, lin_to_db

    config = config or MetricConfig()
    sinr_db = np.asarray(sinr_db, dtype=np.float64)
    valid = ~np.isnan(sinr_db)
    category = 1 if config.link_channel == "pdsch" else 0
    phy, illa = _sionna_link(config.link_channel, config.mcs_table_index, float(config.bler_target))

    mcs = np.full(sinr_db.shape, -1, np.int16)
    bler = np.full(sinr_db.shape, np.nan, np.float32)
    thr = np.full(sinr_db.shape, np.nan, np.float32)
    tbs = np.zeros(sinr_db.shape, np.int32)
    if not valid.any():
        return {"mcs_index": mcs, "bler": bler, "throughput_bps": thr, "tbs_bits": tbs}

    # The same dB -> linear -> dB round trip as PHYAbstraction.get_bler, so that every point
    # lands on the grid index a direct call would use.
    sinr_lin = db_to_lin(torch.as_tensor(np.clip(sinr_db[valid], -300.0, 300.0), dtype=torch.float32))
    idx = phy.get_idx_from_grid(lin_to_db(sinr_lin), "snr").numpy()  # [P]
    unique, inverse = np.unique(idx, return_inverse=True)
    lo, _, step = phy.snr_db_interp_min_max_delta
    grid_db = torch.as_tensor(lo + unique * step, dtype=torch.float32)  # [U]
    sinr_eff = db_to_lin(grid_db)  # [U]
    num_re = torch.full(grid_db.shape, config.data_re_per_slot, dtype=torch.int32)  # [U]

    mcs_u = illa(sinr_eff=sinr_eff, num_allocated_re=num_re, mcs_table_index=config.mcs_table_index,
                 mcs_category=category)  # [U]
    *_, tbler_u, _ = phy(mcs_u, sinr_eff=sinr_eff, num_allocated_re=num_re,
                         mcs_table_index=config.mcs_table_index, mcs_category=category)  # [U]
    modulation, rate = MCSDecoderNR(device="cpu")(mcs_u, config.mcs_table_index, category)
    tbs_u, _, _ = TransportBlockNR(device="cpu").transport_block_size(
        modulation, rate, modulation * num_re)  # [U]

    tbler_np = tbler_u.double().numpy()
    tbs_np = tbs_u.numpy().astype(np.int64)
    thr_u = (1.0 - tbler_np) * tbs_np / config.slot_duration_s
    mcs[valid] = mcs_u.numpy()[inverse]
    bler[valid] = tbler_np[inverse]
    thr[valid] = thr_u[inverse]
    tbs[valid] = tbs_np[inverse]
    return {"mcs_index": mcs, "bler": bler, "throughput_bps": thr, "tbs_bits": tbs}


# ----------------------------------------------------------------------------------------------
# Reporting realism
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReportingConfig:
    """How exact metrics become UE reports: noise, sensitivity floor, 3GPP ranges, quantization.

    Defaults follow NR (TS 38.133 measurement report mapping): SS-RSRP -156..-31 dBm in
    1 dB steps, SS-RSRQ -43..20 dB in 0.5 dB steps, SS-SINR -23..40 dB in 0.5 dB steps.
    NR's ranges are chosen over LTE's (RSRP -140..-44 dBm, RSRQ -19.5..-3 dB; see
    :meth:`lte`) because real drive tests, e.g. the Rome NB-IoT campaign of seed 004 with
    NRSRQ down to -31 dB, fall outside LTE's RSRQ range. A step of 0 turns quantization
    off, a sigma of 0 the noise, a range of ``None`` the clipping, a floor of ``None`` the
    masking. ``snr_db`` is treated like ``sinr_db``.

    Parameters
    ----------
    rsrp_sigma_db, rssi_sigma_db, rsrq_sigma_db, sinr_sigma_db : float
        Standard deviation of the Gaussian-in-dB (log-normal) measurement noise. 2 dB for
        powers and SINR (the order of 3GPP's +-4.5..6 dB UE accuracy bounds read as 2-3
        sigma), 1 dB for RSRQ, whose numerator and denominator errors partly cancel.
    rsrp_step_db, rssi_step_db, rsrq_step_db, sinr_step_db : float
        Reporting resolution: values are rounded to the nearest multiple.
    rsrp_range_dbm, rssi_range_dbm, rsrq_range_db, sinr_range_db : (float, float) or None
        Reporting ranges; values outside saturate at the ends as 3GPP's lowest and highest
        report indices do. Licensed LTE/NR defines no RSSI report; -120..-20 dBm covers
        anything the noise floor (-95 dBm over 15 MHz) and a nearby cell produce.
    rsrp_floor_dbm : float or None
        Sensitivity: a cell whose measured RSRP is below this is not reported (NaN in
        every per-cell metric). -120 dBm is a typical LTE/NR cell-detection limit
        (seed 004's Rome data bottom out near -117 dBm).
    """

    rsrp_sigma_db: float = 2.0
    rssi_sigma_db: float = 2.0
    rsrq_sigma_db: float = 1.0
    sinr_sigma_db: float = 2.0
    rsrp_step_db: float = 1.0
    rssi_step_db: float = 1.0
    rsrq_step_db: float = 0.5
    sinr_step_db: float = 0.5
    rsrp_range_dbm: tuple[float, float] | None = (-156.0, -31.0)
    rssi_range_dbm: tuple[float, float] | None = (-120.0, -20.0)
    rsrq_range_db: tuple[float, float] | None = (-43.0, 20.0)
    sinr_range_db: tuple[float, float] | None = (-23.0, 40.0)
    rsrp_floor_dbm: float | None = -120.0

    def __post_init__(self) -> None:
        problems = []
        for kind in ("rsrp", "rssi", "rsrq", "sinr"):
            if getattr(self, f"{kind}_sigma_db") < 0:
                problems.append(f"{kind}_sigma_db must be >= 0")
            if getattr(self, f"{kind}_step_db") < 0:
                problems.append(f"{kind}_step_db must be >= 0")
            bounds = self._range(kind)
            if bounds is not None and not bounds[0] < bounds[1]:
                problems.append(f"{kind} range {bounds} must be (low, high) with low < high")
        if problems:
            raise InputError("ReportingConfig: " + "; ".join(problems))

    def _range(self, kind: str) -> tuple[float, float] | None:
        unit = "dbm" if kind in ("rsrp", "rssi") else "db"
        return getattr(self, f"{kind}_range_{unit}")

    @classmethod
    def lte(cls, **overrides: Any) -> ReportingConfig:
        """LTE ranges (TS 36.133): RSRP -140..-44 dBm, RSRQ -19.5..-3 dB; SINR as in NR."""
        return cls(**{"rsrp_range_dbm": (-140.0, -44.0), "rsrq_range_db": (-19.5, -3.0), **overrides})

    @classmethod
    def exact(cls) -> ReportingConfig:
        """No noise, clipping, quantization or floor: reports equal the exact values."""
        off: dict[str, Any] = {f"{kind}_{what}_db": 0.0 for kind in ("rsrp", "rssi", "rsrq", "sinr")
                               for what in ("sigma", "step")}
        return cls(**off, rsrp_range_dbm=None, rssi_range_dbm=None, rsrq_range_db=None,
                   sinr_range_db=None, rsrp_floor_dbm=None)


# Which reporting settings each recognised key gets.
_REPORTED = {"rsrp_dbm": "rsrp", "rssi_dbm": "rssi", "cell_rssi_dbm": "rssi", "rsrq_db": "rsrq",
             "sinr_db": "sinr", "snr_db": "sinr"}


def apply_reporting(values: Mapping[str, np.ndarray], config: ReportingConfig | None = None,
                    rng: np.random.Generator | int | None = None) -> dict[str, np.ndarray]:
    """Turn exact metrics into UE reports: noise, then floor, then range, then quantization.

    Works on any shapes: whole maps from :func:`compute_metrics` or sampled measurements.

    Parameters
    ----------
    values : mapping of str to array
        Recognised keys: ``rsrp_dbm``, ``rssi_dbm``, ``cell_rssi_dbm``, ``rsrq_db``,
        ``sinr_db``, ``snr_db``; any other key (``path_gain_db``, ``serving_cell``,
        ``bler`` ...) is passed through unchanged. NaN stays NaN.
    config : ReportingConfig, optional
    rng : numpy Generator or int seed, optional
        Source of the noise; the same seed gives the same reports. Draws are made per key
        in sorted key order, so adding an unrelated key does not change the others' noise.

    Returns
    -------
    dict of str to ndarray
        The same keys; recognised ones float32. The floor applies to the noisy RSRP: where
        it is below ``rsrp_floor_dbm`` every recognised array of RSRP's shape is NaN (the
        cell is not reported); arrays of other shapes, e.g. the ``(H, W)`` ``rssi_dbm`` of
        the serving carrier, are not masked.
    """
    config = config or ReportingConfig()
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    out: dict[str, np.ndarray] = dict(values)
    noisy: dict[str, np.ndarray] = {}
    for key in sorted(k for k in values if k in _REPORTED):
        arr = np.asarray(values[key], dtype=np.float64)
        sigma = getattr(config, f"{_REPORTED[key]}_sigma_db")
        noisy[key] = arr + rng.normal(0.0, sigma, arr.shape) if sigma > 0 else arr.copy()

    if config.rsrp_floor_dbm is not None and "rsrp_dbm" in noisy:
        with np.errstate(invalid="ignore"):
            hidden = noisy["rsrp_dbm"] < config.rsrp_floor_dbm
        for arr in noisy.values():
            if arr.shape == hidden.shape:
                arr[hidden] = np.nan

    for key, arr in noisy.items():
        kind = _REPORTED[key]
        bounds = config._range(kind)
        if bounds is not None:
            np.clip(arr, bounds[0], bounds[1], out=arr)
        step = getattr(config, f"{kind}_step_db")
        if step > 0:
            arr = np.round(arr / step) * step
        out[key] = arr.astype(np.float32)
    return out
