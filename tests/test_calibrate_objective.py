"""The calibration objectives: exact values, offset invariance, dark points, config and search boxes."""

from __future__ import annotations

import numpy as np
import pytest

from calibrate.fit import CalibrationConfig, refine_space, site_space
from calibrate.objective import OBJECTIVES, CellPoints, offset_huber, offset_rmse, score_site
from calibrate.space import SearchSpace
from twin.errors import InputError


def test_rmse_of_known_vectors():
    meas = np.array([-70.0, -80.0, -90.0, -100.0])
    sim = np.array([-60.0, -72.0, -80.0, -88.0])  # residuals -10, -8, -10, -12: offset -10
    rmse, b = offset_rmse(sim, meas)
    assert b == pytest.approx(-10.0)
    assert rmse == pytest.approx(np.sqrt((0 + 4 + 0 + 4) / 4))
    # a perfect shape at any level: zero
    assert offset_rmse(meas + 17.5, meas)[0] == pytest.approx(0.0, abs=1e-12)


def test_huber_offset_is_robust_and_exact():
    meas = np.zeros(5)
    sim = -np.array([0.0, 0.0, 0.0, 0.0, 50.0])  # one outlier residual of +50 dB
    loss, b = offset_huber(sim, meas, delta_db=6.0)
    # the Huber offset b solves sum psi(r - b) = 0: -4 b + 6 = 0 -> b = 1.5 (the mean would be 10)
    assert b == pytest.approx(1.5, abs=1e-5)
    expected = (4 * 0.5 * 1.5 ** 2 + 6.0 * (48.5 - 3.0)) / 5
    assert loss == pytest.approx(np.sqrt(2 * expected), rel=1e-6)
    # within delta it is the RMSE
    sim2 = np.array([1.0, -1.0, 2.0, -2.0, 0.0])
    assert offset_huber(sim2, meas, 6.0)[0] == pytest.approx(offset_rmse(sim2, meas)[0])
    with pytest.raises(InputError, match="delta_db"):
        offset_huber(sim2, meas, 0.0)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_adding_a_constant_to_the_simulated_values_leaves_every_objective_unchanged(objective):
    rng = np.random.default_rng(0)
    pts = [CellPoints(1, np.zeros((40, 2)), rng.normal(-85, 8, 40)),
           CellPoints(2, np.zeros((25, 2)), rng.normal(-90, 6, 25))]
    sim = {1: pts[0].measured + rng.normal(0, 4, 40) + 12.0, 2: pts[1].measured + rng.normal(0, 4, 25) + 12.0}
    sim[1][3] = np.nan  # a dark point
    a = score_site(sim, pts, objective)
    b = score_site({c: v - 33.0 for c, v in sim.items()}, pts, objective)
    assert b.loss == pytest.approx(a.loss, abs=1e-9)
    assert b.rho == pytest.approx(a.rho) and b.rmse_db == pytest.approx(a.rmse_db)
    assert b.offset_db == pytest.approx(a.offset_db + 33.0)


def test_scores_rank_the_truth_first_and_combined_is_its_formula():
    rng = np.random.default_rng(1)
    meas = rng.normal(-85, 8, 200)
    pts = [CellPoints(1, np.zeros((200, 2)), meas)]
    truth = {1: meas + rng.normal(0, 4, 200)}
    squashed = {1: 0.3 * truth[1]}  # a monotone change: the same ranks, wrong level slope
    t, s = score_site(truth, pts, "rmse"), score_site(squashed, pts, "rmse")
    assert s.rho == pytest.approx(t.rho)  # Spearman cannot tell them apart
    assert s.loss > t.loss + 1.0  # the RMSE can
    c = score_site(truth, pts, "combined")
    assert c.loss == pytest.approx(t.rmse_db / np.std(meas) + 1 - t.rho)
    assert score_site(truth, pts, "spearman").loss == pytest.approx(-t.rho)


def test_dark_points_are_penalized_by_the_level_objectives():
    meas = np.array([-70.0, -75.0, -80.0, -85.0, -90.0])
    pts = [CellPoints(1, np.zeros((5, 2)), meas)]
    lit = score_site({1: meas.copy()}, pts, "rmse")
    dark = score_site({1: np.array([-70.0, -75.0, -80.0, -85.0, np.nan])}, pts, "rmse")
    assert lit.loss == pytest.approx(0.0, abs=1e-12) and dark.loss > 1.0
    with pytest.raises(InputError, match="objective"):
        score_site({1: meas}, pts, "likelihood")


def test_config_checks_the_new_options():
    with pytest.raises(InputError, match="objective: 'mse'"):
        CalibrationConfig(objective="mse")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="height_prior_m"):
        CalibrationConfig(height_prior_m=-1.0)
    with pytest.raises(InputError, match="minus refine_calls"):
        CalibrationConfig(calls=20, refine_calls=10, recheck_top=5)


def test_height_prior_and_refinement_boxes():
    import pandas as pd

    space = SearchSpace.from_options()
    cells = pd.DataFrame({"height_m": [30.0]})
    sp = site_space(space, cells, 15.0)
    assert dict(zip(sp.params, sp.bounds, strict=True))["h"] == (20.0, 45.0)  # 30 ± 15 within 20:100
    assert site_space(space, cells, None) is space
    box = refine_space(space, {"x": 45.0, "y": 0.0, "h": 60.0, "azimuth": 350.0}, 0.25)
    b = dict(zip(box.params, box.bounds, strict=True))
    assert b["x"] == (25.0, 50.0)  # shifted to stay inside -50:50
    assert b["y"] == (-12.5, 12.5) and b["h"] == (50.0, 70.0)
    assert b["azimuth"] == (305.0, 395.0) and box.circular == ()  # an arc through north
    assert box.contains({"x": 30.0, "y": 0.0, "h": 55.0, "azimuth": 10.0})


def test_pose_prior_chi2_wraps_azimuth_and_is_zero_at_the_file():
    from calibrate.objective import PosePrior

    prior = PosePrior({"x": 0.0, "y": 0.0, "h": 30.0, "azimuth": 350.0}, {"x": 25.0, "y": 25.0, "azimuth": 20.0},
                      sigma_db=8.0, n_eff=16.0)
    assert prior.penalize(9.0, {"x": 0.0, "y": 0.0, "h": 60.0, "azimuth": 350.0}) == (9.0, 0.0)  # h is free
    # 25 m east, 20° across north (350 -> 10): one σ each
    loss, chi2 = prior.penalize(6.0, {"x": 25.0, "y": 0.0, "h": 30.0, "azimuth": 10.0})
    assert chi2 == pytest.approx(2.0)
    assert loss == pytest.approx(np.sqrt(36.0 + 64.0 * 2.0 / 16.0))


def test_effective_points_count_correlation_squares():
    from calibrate.objective import effective_points

    along = np.stack([np.arange(0.0, 500.0, 10.0), np.full(50, 5.0)], 1)  # 50 points over 500 m of road
    assert effective_points(along, 50.0) == 10
    assert effective_points(along, 1000.0) == 1
    assert effective_points(along, 5.0) == 50
    with pytest.raises(InputError, match="prior_corr_m"):
        effective_points(along, 0.0)


def test_config_checks_the_prior_and_physics_options():
    with pytest.raises(InputError, match="prior_xy_m"):
        CalibrationConfig(prior_xy_m=0.0)
    with pytest.raises(InputError, match="needs a dB objective"):
        CalibrationConfig(prior_azimuth_deg=20.0, objective="spearman")
    cfg = CalibrationConfig(prior_xy_m=25.0, prior_azimuth_deg=20.0)
    assert cfg.has_prior() and cfg.prior_sigmas() == {"x": 25.0, "y": 25.0, "azimuth": 20.0}
    assert not CalibrationConfig().has_prior()
    # diffraction reaches the tracer's settings; off keeps the base's
    from twin.radio.tracer import TraceConfig

    on = CalibrationConfig(diffraction=True).trace_config()
    assert on.diffraction and on.edge_diffraction
    off = CalibrationConfig().trace_config()
    assert not off.diffraction and not off.edge_diffraction
    assert CalibrationConfig().trace_config(TraceConfig(diffraction=True)).diffraction


def test_prior_and_offset_keys_load_from_yaml(tmp_path):
    from twin.config import load_yaml

    p = tmp_path / "plan.yaml"
    p.write_text("calibrate: {prior_xy_m: 25, prior_h_m: 6, prior_azimuth_deg: 20, diffraction: true, "
                 "write_offset: true}\n")
    cfg = load_yaml(CalibrationConfig, p, section="calibrate")
    assert (cfg.prior_xy_m, cfg.prior_h_m, cfg.prior_azimuth_deg) == (25, 6, 20)
    assert cfg.diffraction and cfg.write_offset
    p.write_text("calibrate: {prior_xy: 25}\n")
    with pytest.raises(Exception, match="prior_xy"):
        load_yaml(CalibrationConfig, p, section="calibrate")


def test_received_offset_is_the_mean_over_received_points():
    from calibrate.objective import received_offset

    pts = [CellPoints(1, np.zeros((3, 2)), np.array([-80.0, -90.0, -100.0])),
           CellPoints(2, np.zeros((2, 2)), np.array([-70.0, -75.0]))]
    sim = {1: np.array([-84.0, np.nan, -104.0]), 2: np.array([-72.0, -77.0])}
    assert received_offset(sim, pts) == pytest.approx((4.0 + 4.0 + 2.0 + 2.0) / 4)
    assert np.isnan(received_offset({1: np.full(3, np.nan), 2: np.full(2, np.nan)}, pts))
