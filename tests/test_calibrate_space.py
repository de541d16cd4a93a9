"""Search space, bounds parsing and the circular azimuth kernel."""

from __future__ import annotations

import numpy as np
import pytest

from calibrate.objective import spearman
from calibrate.space import CircularMatern, SearchSpace, make_estimator, parse_bounds, parse_params
from twin.errors import InputError


def test_default_space_is_seed_004():
    sp = SearchSpace.from_options()
    assert sp.params == ("x", "y", "h", "azimuth")
    assert sp.bounds == ((-50, 50), (-50, 50), (20, 100), (0, 360))
    assert sp.circular == (3,)


@pytest.mark.parametrize("text, message", [
    ("x=50:-50", "x=50:-50: inverted or empty bounds"),
    ("h=30:30", "inverted or empty"),
    ("h=-5:40", "above the ground"),
    ("azimuth=10:400", "an arc needs 0 < HIGH - LOW <= 360"),
    ("q=1:2", "unknown parameter 'q'"),
    ("x=1", "expected NAME=LOW:HIGH"),
    ("x=a:b", "must be numbers"),
])
def test_bad_bounds_are_clear_errors(text, message):
    with pytest.raises(InputError, match="--bounds") as err:
        parse_bounds(text)
    assert message in str(err.value)


def test_bad_params():
    with pytest.raises(InputError, match="unknown parameter"):
        parse_params("x,yaw")
    with pytest.raises(InputError, match="given twice"):
        parse_params("x,x")
    assert parse_params("x, y ,tilt") == ("x", "y", "tilt")


def test_azimuth_arc_through_north_wraps_and_is_not_circular():
    sp = SearchSpace.from_options("azimuth,h", "azimuth=-60:60")
    assert sp.circular == ()
    assert sp.to_values([0.0, 0.0])["azimuth"] == pytest.approx(300.0)
    assert sp.to_values([0.5, 0.0])["azimuth"] == pytest.approx(0.0)
    assert sp.to_unit({"azimuth": 330.0, "h": 20.0})[0] == pytest.approx(0.25)
    assert sp.contains({"azimuth": 30.0, "h": 50.0})
    assert not sp.contains({"azimuth": 180.0, "h": 50.0})
    assert not sp.contains({"azimuth": 30.0, "h": 10.0})  # h below 20


def test_unit_round_trip():
    sp = SearchSpace.from_options("x,y,h,azimuth,tilt,power")
    values = {"x": -12.5, "y": 40.0, "h": 33.0, "azimuth": 359.0, "tilt": 6.0, "power": -3.0}
    back = sp.to_values(sp.to_unit(values))
    for k, v in values.items():
        assert back[k] == pytest.approx(v)


def test_kernel_treats_359_and_1_degrees_as_close():
    k = CircularMatern(length_scale=np.array([0.3, 0.1]), circular=(1,))
    deg = np.array([[0.5, 359.0 / 360], [0.5, 1.0 / 360], [0.5, 0.0], [0.5, 2.0 / 360], [0.5, 180.0 / 360]])
    K = k(deg)
    # 359° vs 1° is exactly as close as 0° vs 2°; far closer than 0° vs 180°
    assert K[0, 1] == pytest.approx(K[2, 3], rel=1e-12)
    assert K[0, 1] > 0.99 > 0.5 > K[2, 4]
    # a shift by a whole turn changes nothing: the kernel is periodic in the angle
    shifted = deg.copy()
    shifted[:, 1] += 1.0
    np.testing.assert_allclose(k(shifted, deg), K, atol=1e-12)


def test_kernel_hyperparameter_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(7, 3))
    k = CircularMatern(length_scale=np.array([0.4, 0.7, 0.2]), circular=(2,))
    _, grad = k(X, eval_gradient=True)
    eps = 1e-6
    for d in range(3):
        theta = k.theta.copy()
        theta[d] += eps
        up = k.clone_with_theta(theta)(X)
        theta[d] -= 2 * eps
        down = k.clone_with_theta(theta)(X)
        np.testing.assert_allclose(grad[..., d], (up - down) / (2 * eps), atol=1e-6)


def test_gp_ei_finds_an_optimum_across_north():
    """A function of azimuth whose peak is at 355°: reachable from both ends of [0, 360)."""
    from skopt import gp_minimize

    sp = SearchSpace.from_options("azimuth")

    def f(u):
        az = sp.to_values(u)["azimuth"]
        gap = (az - 355.0 + 180.0) % 360.0 - 180.0
        return -np.cos(np.radians(gap))

    res = gp_minimize(f, sp.dimensions(), base_estimator=make_estimator(sp, 0), acq_func="EI",
                      acq_optimizer="sampling", n_calls=14, n_initial_points=4, random_state=0)
    az = sp.to_values(res.x)["azimuth"]
    assert abs((az - 355.0 + 180.0) % 360.0 - 180.0) < 8.0
    # the fitted GP predicts nearly the same at 359° and 1° (a linear kernel would not have to)
    model = res.models[-1]
    mu = model.predict(np.array([[359.0 / 360], [1.0 / 360]]))
    assert abs(mu[0] - mu[1]) < 0.05


def test_spearman_ranks_unreceived_points_last():
    meas = np.array([-60.0, -70.0, -80.0, -90.0])
    assert spearman(np.array([-50.0, -55.0, -58.0, np.nan]), meas) == pytest.approx(1.0)
    # dropping the dark point instead would score this perfect too; ranked last, it is not
    assert spearman(np.array([np.nan, -55.0, -58.0, -60.0]), meas) < 0
    assert spearman(np.full(4, -70.0), meas) == 0.0
    assert spearman(np.full(4, np.nan), meas) == 0.0
