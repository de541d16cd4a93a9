"""Radio metrics: identities, hand-computed numbers, interference, sionna.sys link abstraction, reporting."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from twin.config import load_yaml
from twin.errors import InputError
from twin.radio.metrics import (
    MAP_KEYS,
    PER_CELL_KEYS,
    MetricConfig,
    ReportingConfig,
    apply_reporting,
    compute_metrics,
    link_performance,
    noise_power_dbm,
)

F1, F2 = 2.1e9, 1.8e9


def random_scene(seed: int = 0, n: int = 6, shape: tuple[int, int] = (20, 30)):
    rng = np.random.default_rng(seed)
    pg = rng.uniform(-150.0, -60.0, (n, *shape))
    pg[rng.random(pg.shape) < 0.2] = np.nan
    pg[0, 0, 0] = -np.inf
    power = rng.uniform(30.0, 46.0, n)
    freq = np.where(np.arange(n) % 2 == 0, F1, F2)
    return pg, power, freq


def lin(db):
    return np.power(10.0, np.asarray(db, dtype=np.float64) / 10.0)


# ------------------------------------------------------------------------------- metrics ----

def test_shapes_dtypes_and_names():
    pg, power, freq = random_scene()
    out = compute_metrics(pg, power, freq)
    assert set(out) == set(PER_CELL_KEYS) | set(MAP_KEYS)
    for key in PER_CELL_KEYS:
        assert out[key].shape == pg.shape and out[key].dtype == np.float32, key
        assert np.array_equal(np.isnan(out[key]), ~np.isfinite(pg)), key
    for key in ("rssi_dbm", "bler", "throughput_bps"):
        assert out[key].shape == pg.shape[1:] and out[key].dtype == np.float32
    assert out["serving_cell"].dtype == np.int16


def test_identities_hold_exactly():
    pg, power, freq = random_scene()
    cfg = MetricConfig()
    out = compute_metrics(pg, power, freq, cfg)
    ok = np.isfinite(pg)
    # RSRP = P - 10 log10(n_RE) + PG, n_RE = 84 * 12 = 1008
    rsrp = power[:, None, None] - 10 * np.log10(1008) + pg
    np.testing.assert_allclose(out["rsrp_dbm"][ok], rsrp[ok], atol=2e-5)
    # RSSI = 10 log10(sum of same-carrier received powers + kTB NF)
    rx = np.where(ok, lin(power[:, None, None] + np.where(ok, pg, 0.0)), 0.0)
    noise = lin(noise_power_dbm(cfg))
    for c in range(len(power)):
        same = freq == freq[c]
        rssi = 10 * np.log10(rx[same].sum(axis=0) + noise)
        np.testing.assert_allclose(out["cell_rssi_dbm"][c][ok[c]], rssi[ok[c]], atol=2e-5)
        with np.errstate(divide="ignore"):
            sinr = 10 * np.log10(rx[c] / (rx[same].sum(axis=0) - rx[c] + noise))
        np.testing.assert_allclose(out["sinr_db"][c][ok[c]], sinr[ok[c]], atol=2e-5)
    # RSRQ = 10 log10(N_RB) + RSRP - RSSI
    rsrq = 10 * np.log10(84) + out["rsrp_dbm"].astype(np.float64) - out["cell_rssi_dbm"]
    np.testing.assert_allclose(out["rsrq_db"][ok], rsrq[ok], atol=2e-5)
    # full load: RSRQ can never exceed N_RB / n_RE = 84 / 1008
    assert np.nanmax(out["rsrq_db"]) <= 10 * np.log10(84 / 1008) + 1e-5


def test_hand_computed_single_cell():
    out = compute_metrics(np.full((1, 1, 1), -100.0), [46.0], [F1])
    # 46 dBm - 10 log10(1008) - 100 dB
    assert out["rsrp_dbm"][0, 0, 0] == pytest.approx(-84.034605, abs=1e-5)
    # -174 dBm/Hz at 290 K (-173.975), + 10 log10(15.12 MHz) = 71.796, + NF 7 dB
    assert noise_power_dbm(MetricConfig()) == pytest.approx(-95.179669, abs=1e-5)
    assert out["snr_db"][0, 0, 0] == pytest.approx(-54.0 + 95.179669, abs=1e-4)
    assert out["cell_rssi_dbm"][0, 0, 0] == pytest.approx(10 * math.log10(10**-5.4 + 10**-9.5179669), abs=1e-4)
    assert out["serving_cell"][0, 0] == 0


def test_one_cell_sinr_equals_snr():
    pg, power, freq = random_scene(n=1)
    out = compute_metrics(pg[:1], power[:1], freq[:1])
    assert np.array_equal(out["sinr_db"], out["snr_db"], equal_nan=True)


def test_same_frequency_cell_lowers_sinr_where_received_only():
    rng = np.random.default_rng(1)
    one = rng.uniform(-130, -70, (1, 15, 15))
    two = rng.uniform(-130, -70, (1, 15, 15))
    two[0, :5] = np.nan  # second cell not received in the first rows
    alone = compute_metrics(one, [43.0], [F1])["sinr_db"][0]
    both = compute_metrics(np.concatenate([one, two]), [43.0, 43.0], [F1, F1])["sinr_db"][0]
    assert np.all(both[5:] < alone[5:] - 1e-3)
    assert np.array_equal(both[:5], alone[:5])
    # on another carrier it does not interfere at all
    other = compute_metrics(np.concatenate([one, two]), [43.0, 43.0], [F1, F2])["sinr_db"][0]
    assert np.array_equal(other, alone)


def test_carrier_tolerance_groups_nearby_frequencies():
    pg = np.full((2, 1, 1), -90.0)
    apart = compute_metrics(pg, [40.0, 40.0], [F1, F1 + 10.0])
    joined = compute_metrics(pg, [40.0, 40.0], [F1, F1 + 10.0], MetricConfig(carrier_tolerance_hz=100.0))
    assert apart["sinr_db"][0, 0, 0] == apart["snr_db"][0, 0, 0]
    assert joined["sinr_db"][0, 0, 0] < 0.01  # equal cells: SINR ~ 0 dB


def test_papers_bugs_regression_rsrq_not_constant_rsrp_not_rssi_shifted():
    pg, power, freq = random_scene(seed=3, n=8, shape=(40, 40))
    out = compute_metrics(pg, power, freq)
    assert np.nanstd(out["rsrq_db"]) > 1.0
    assert np.nanstd(out["rsrp_dbm"] - out["cell_rssi_dbm"]) > 1.0
    # RSRP is per resource element: 30 dB below the received power, not RSSI minus 0.03 dB
    assert np.nanmax(out["rsrp_dbm"] - out["cell_rssi_dbm"]) <= -10 * np.log10(1008) + 1e-4


def test_serving_cell_is_strongest_rsrp_and_rssi_follows_its_carrier():
    pg = np.array([[[-100.0, -100.0, np.nan]], [[-95.0, np.nan, np.nan]]])
    # cell 1 has 5 dB more path gain but 10 dB less power: cell 0 serves at (0, 0)
    out = compute_metrics(pg, [46.0, 36.0], [F1, F2])
    assert out["serving_cell"].tolist() == [[0, 0, -1]]
    assert out["rssi_dbm"][0, 0] == out["cell_rssi_dbm"][0, 0, 0]
    assert np.isnan(out["rssi_dbm"][0, 2]) and np.isnan(out["bler"][0, 2])
    assert out["throughput_bps"][0, 2] == 0.0
    pg2 = pg.copy()
    pg2[1, 0, 0] = -80.0
    out2 = compute_metrics(pg2, [46.0, 36.0], [F1, F2])
    assert out2["serving_cell"][0, 0] == 1
    assert out2["rssi_dbm"][0, 0] == out2["cell_rssi_dbm"][1, 0, 0]


def test_load_scales_rssi_and_interference_not_rsrp():
    pg = np.full((2, 1, 1), -90.0)
    full = compute_metrics(pg, [40.0, 40.0], [F1, F1])
    half = compute_metrics(pg, [40.0, 40.0], [F1, F1], MetricConfig(load=0.5))
    assert half["rsrp_dbm"][0, 0, 0] == full["rsrp_dbm"][0, 0, 0]
    assert half["sinr_db"][0, 0, 0] == pytest.approx(full["sinr_db"][0, 0, 0] + 10 * np.log10(2), abs=1e-3)
    assert half["cell_rssi_dbm"][0, 0, 0] == pytest.approx(full["cell_rssi_dbm"][0, 0, 0] - 10 * np.log10(2), abs=1e-3)


def test_no_cells_and_nothing_received():
    none = compute_metrics(np.zeros((0, 3, 4)), [], [])
    assert none["rsrp_dbm"].shape == (0, 3, 4) and (none["serving_cell"] == -1).all()
    assert np.isnan(none["bler"]).all() and (none["throughput_bps"] == 0).all()
    dark = compute_metrics(np.full((2, 3, 4), np.nan), [40.0, 40.0], [F1, F1])
    assert np.isnan(dark["sinr_db"]).all() and (dark["serving_cell"] == -1).all()
    assert np.isnan(dark["rssi_dbm"]).all() and (dark["throughput_bps"] == 0).all()


def test_bad_inputs_and_config_are_named():
    with pytest.raises(InputError, match="power_dbm: expected shape \\(2,\\)"):
        compute_metrics(np.zeros((2, 3, 3)) - 90, [40.0], [F1, F1])
    with pytest.raises(InputError, match="path_gain_db: expected shape"):
        compute_metrics(np.zeros((3, 3)), [40.0], [F1])
    with pytest.raises(InputError, match="\\+inf"):
        compute_metrics(np.full((1, 1, 1), np.inf), [40.0], [F1])
    with pytest.raises(InputError, match="subcarrier_spacing_hz"):
        MetricConfig(subcarrier_spacing_hz=20e3)
    with pytest.raises(InputError, match="no BLER table for pusch table 3"):
        MetricConfig(link_channel="pusch", mcs_table_index=3)


def test_configs_load_from_yaml(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("metrics:\n  n_rb: 1\n  noise_figure_db: 5\n"
                    "reporting:\n  rsrq_range_db: [-19.5, -3]\n  rsrp_floor_dbm: null\n")
    cfg = load_yaml(MetricConfig, path, section="metrics")
    assert cfg.n_re == 12 and cfg.measurement_bandwidth_hz == 180e3 and cfg.noise_figure_db == 5.0
    rep = load_yaml(ReportingConfig, path, section="reporting")
    assert rep.rsrq_range_db == (-19.5, -3.0) and rep.rsrp_floor_dbm is None
    path.write_text("metrics:\n  n_rbs: 1\n")
    with pytest.raises(InputError, match="m.yaml \\[metrics\\]: unknown key\\(s\\) n_rbs"):
        load_yaml(MetricConfig, path, section="metrics")


# --------------------------------------------------------------------- sionna.sys link ----

def _bundled_table(mcs: int) -> dict:
    import sionna.sys

    path = os.path.join(os.path.dirname(sionna.sys.__file__), "bler_tables", "PDSCH_table1.json")
    with open(path, encoding="utf-8") as f:
        table = json.load(f)
    return table["category"]["1"]["index"]["1"]["MCS"][str(mcs)]


def test_link_against_bundled_tables_and_38214_tbs():
    lp = link_performance(np.array([20.0, -5.0, np.nan]))
    # 20 dB is a point of the bundled table: MCS 28 (64-QAM, R 948/1024) has code-block
    # BLER B there (CBS 2000 curve, used for the larger 7,712-bit blocks); 8 code blocks.
    entry = _bundled_table(28)
    b = entry["CBS"]["2000"]["BLER"][entry["SNR_db"].index(20.0)]
    assert lp["mcs_index"][0] == 28
    assert lp["bler"][0] == pytest.approx(1 - (1 - b) ** 8, abs=2e-3)
    # TS 38.214 5.1.3.2 by hand: N_RE = 84 * (12*12 - 12) = 11088, N_info = 11088*6*948/1024
    # = 61590 -> N'_info = 61440, C = 8, TBS = 64 * ceil(61464 / 64) - 24 = 61480 bits
    assert lp["tbs_bits"][0] == 61480
    assert lp["throughput_bps"][0] == pytest.approx((1 - lp["bler"][0]) * 61480 / 1e-3, rel=1e-6)
    # -5 dB: every MCS of the table has BLER 1 -> the lowest one (3), nothing delivered
    assert _bundled_table(3)["CBS"]["2000"]["BLER"][0] == 1.0
    assert lp["mcs_index"][1] == 3 and lp["bler"][1] == pytest.approx(1.0) and lp["throughput_bps"][1] == 0.0
    assert lp["mcs_index"][2] == -1 and np.isnan(lp["bler"][2])


def test_link_equals_direct_sionna_calls_on_every_point():
    import torch

    from twin.radio.metrics import _sionna_link

    cfg = MetricConfig()
    sinr_db = np.random.default_rng(5).uniform(-8, 32, 400)
    phy, illa = _sionna_link("pdsch", 1, 0.1)
    sinr = torch.pow(10.0, torch.as_tensor(sinr_db, dtype=torch.float32) / 10)
    num_re = torch.full((400,), cfg.data_re_per_slot, dtype=torch.int32)
    mcs = illa(sinr_eff=sinr, num_allocated_re=num_re, mcs_table_index=1, mcs_category=1)
    *_, tbler, _ = phy(mcs, sinr_eff=sinr, num_allocated_re=num_re, mcs_table_index=1, mcs_category=1)
    lp = link_performance(sinr_db, cfg)
    assert np.array_equal(lp["mcs_index"], mcs.numpy())
    np.testing.assert_allclose(lp["bler"], tbler.numpy(), atol=1e-6)


def test_link_trends_with_sinr():
    sinr_db = np.arange(-5.0, 30.1, 0.1)
    lp = link_performance(sinr_db)
    assert np.all((lp["bler"] >= 0) & (lp["bler"] <= 1))
    # link adaptation keeps the TBLER at or below the target once any MCS qualifies
    assert np.all(lp["bler"][sinr_db >= 0] <= 0.1 + 1e-6)
    assert np.all(np.diff(lp["mcs_index"]) >= 0)
    # throughput grows with SINR up to the top MCS (20 dB), then stays
    coarse = link_performance(np.arange(-5.0, 30.1, 2.5))
    assert np.all(np.diff(coarse["throughput_bps"][:11]) > 0)
    assert np.all(coarse["throughput_bps"][10:] == coarse["throughput_bps"][10])
    assert np.all(np.diff(coarse["bler"][:3]) <= 0)  # out of outage: 1 -> 1 -> small
    # at one fixed MCS, BLER falls with SINR (the table read through sionna)
    from twin.radio.metrics import _sionna_link
    phy, _ = _sionna_link("pdsch", 1, 0.1)
    import torch
    b = phy.get_bler(10, 1, 1, 2000, torch.pow(10.0, torch.arange(-5.0, 10.0, 0.5) / 10)).numpy()
    assert np.all(np.diff(b) <= 1e-6) and b[0] > 0.9 and b[-1] < 0.01


def test_compute_metrics_bler_throughput_follow_serving_sinr():
    pg = np.array([[[-140.0, -120.0, -100.0, -80.0]]])
    out = compute_metrics(pg, [46.0], [F1])
    lp = link_performance(out["sinr_db"][0].astype(np.float64))
    np.testing.assert_array_equal(out["bler"], lp["bler"])
    np.testing.assert_array_equal(out["throughput_bps"], lp["throughput_bps"])
    assert np.all(np.diff(out["throughput_bps"][0]) >= 0) and out["throughput_bps"][0, -1] > 5e7


# ---------------------------------------------------------------------------- reporting ----

def test_reporting_quantizes_clips_and_masks():
    values = {"rsrp_dbm": np.array([-130.0, -118.3, -80.26, -20.0, np.nan]),
              "rsrq_db": np.array([-11.26, -12.74, -50.0, -3.1, -10.0]),
              "sinr_db": np.array([50.0, 3.26, -30.0, 0.1, 1.0]),
              "serving_cell": np.array([1, 2, 3, 4, 5])}
    cfg = ReportingConfig(rsrp_sigma_db=0, rsrq_sigma_db=0, sinr_sigma_db=0, rssi_sigma_db=0)
    rep = apply_reporting(values, cfg, rng=0)
    # floor -120 dBm hides the first cell in every per-cell metric; NaN stays NaN
    assert np.isnan(rep["rsrp_dbm"][[0, 4]]).all() and np.isnan(rep["rsrq_db"][0]) and np.isnan(rep["sinr_db"][0])
    assert rep["rsrp_dbm"][1:4].tolist() == [-118.0, -80.0, -31.0]  # 1 dB steps, clipped at -31
    assert rep["rsrq_db"][1:].tolist() == [-12.5, -43.0, -3.0, -10.0]  # 0.5 dB steps, clipped at -43
    assert rep["sinr_db"][1:].tolist() == [3.5, -23.0, 0.0, 1.0]
    assert rep["serving_cell"] is values["serving_cell"]
    lte = apply_reporting(values, ReportingConfig.lte(rsrq_sigma_db=0.0, rsrp_sigma_db=0.0), rng=0)
    assert lte["rsrq_db"][2] == -19.5 and lte["rsrq_db"][3] == -3.0


def test_reporting_noise_sigma_and_seed():
    true = {"rsrp_dbm": np.full(200_000, -80.0), "rssi_dbm": np.full(200_000, -60.0)}
    cfg = ReportingConfig(rsrp_sigma_db=3.0, rsrp_step_db=0.0, rssi_sigma_db=1.5, rssi_step_db=0.0)
    rep = apply_reporting(true, cfg, rng=np.random.default_rng(7))
    assert np.std(rep["rsrp_dbm"] + 80.0) == pytest.approx(3.0, rel=0.02)
    assert np.std(rep["rssi_dbm"] + 60.0) == pytest.approx(1.5, rel=0.02)
    assert abs(np.mean(rep["rsrp_dbm"] + 80.0)) < 0.03
    again = apply_reporting(true, cfg, rng=7)
    assert np.array_equal(rep["rsrp_dbm"], again["rsrp_dbm"])
    other = apply_reporting(true, cfg, rng=8)
    assert not np.array_equal(rep["rsrp_dbm"], other["rsrp_dbm"])


def test_reporting_on_maps_masks_only_per_cell_arrays():
    pg, power, freq = random_scene(seed=2)
    out = compute_metrics(pg, power, freq)
    exact = apply_reporting(out, ReportingConfig.exact())
    for key in ("rsrp_dbm", "rsrq_db", "cell_rssi_dbm", "rssi_dbm"):
        assert np.array_equal(exact[key], out[key], equal_nan=True)
    rep = apply_reporting(out, ReportingConfig(), rng=1)
    hidden = np.isnan(rep["rsrp_dbm"]) & ~np.isnan(out["rsrp_dbm"])
    assert hidden.any() and np.isnan(rep["rsrq_db"][hidden]).all() and np.isnan(rep["cell_rssi_dbm"][hidden]).all()
    assert rep["rssi_dbm"].shape == out["rssi_dbm"].shape
    assert np.nanmin(rep["rsrp_dbm"]) >= -120.0
    q = rep["rsrq_db"][np.isfinite(rep["rsrq_db"])]
    assert np.array_equal(q * 2, np.round(q * 2))
