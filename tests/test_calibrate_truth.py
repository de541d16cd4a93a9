"""Known truth over the Helsinki scene: perturb a true BS file, calibrate it back (slow).

The drive test is simulated from the true sites along drivable roads (σ = 4 dB noise,
1 dB quantization), traced with another Sionna seed and finer cells than calibration
uses, so the fit cannot win by replaying the truth's own ray noise. The BS file is
perturbed by 20–40 m laterally, ±10–20 m in height and ±30–60° in azimuth.

Cheaper than the defaults to stay near a minute on a 2-core CPU: 3 single-cell sites and
60 evaluations per site instead of 90 (rays and cells as the defaults: 10^6 on 8 m).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calibrate.fit import CalibrationConfig, calibrate
from calibrate.simulate import simulate_drive_test
from twin.radio.tracer import TraceConfig, Tracer

CALLS = 60
SAMPLES = 1_000_000


def _angle_gap(a, b):
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


@pytest.mark.slow
def test_calibration_recovers_perturbed_sites(tmp_path):
    from twin.scene.build import build_scene

    scene = build_scene(tmp_path / "helsinki")
    truth = pd.DataFrame({
        "bs_id": ["A", "B", "C"], "cell_id": [1, 2, 3],
        "x_m": [-150.0, 150.0, 100.0], "y_m": [250.0, -250.0, 300.0], "height_m": [35.0, 45.0, 40.0],
        "azimuth_deg": [120.0, 300.0, 200.0], "frequency_hz": [1.80e9, 1.82e9, 1.84e9]})
    tracer = Tracer(scene, TraceConfig(samples_per_tx=1_000_000, cell_size_m=4.0, seed=7))
    drive = simulate_drive_test(scene, truth, tracer=tracer, spacing_m=10.0, radius_m=250.0, sigma_db=4.0,
                                step_db=1.0, seed=1)
    drive.to_csv(tmp_path / "dt.csv", index=False)

    rng = np.random.default_rng(3)
    wrong = truth.copy()
    angle, dist = rng.uniform(0, 2 * np.pi, 3), rng.uniform(20, 40, 3)
    wrong["x_m"] += dist * np.cos(angle)
    wrong["y_m"] += dist * np.sin(angle)
    wrong["height_m"] += rng.choice([-1, 1], 3) * rng.uniform(10, 20, 3)
    wrong["azimuth_deg"] = (wrong["azimuth_deg"] + rng.choice([-1, 1], 3) * rng.uniform(30, 60, 3)) % 360
    wrong.to_csv(tmp_path / "bs.csv", index=False)

    cfg = CalibrationConfig(calls=CALLS, samples_per_tx=SAMPLES, cell_size_m=8.0, metric="rssi")
    res = calibrate(scene, tmp_path / "bs.csv", tmp_path / "dt.csv", tmp_path / "cal.csv", tmp_path / "report", cfg)
    fitted = pd.read_csv(tmp_path / "cal.csv")
    assert fitted["calibrated"].all()

    gain = np.mean([s.rho_after - s.rho_before for s in res.sites])
    assert gain >= 0.15, [s.summary() for s in res.sites]

    def pose_errors(table):
        lateral = np.hypot(table["x_m"] - truth["x_m"], table["y_m"] - truth["y_m"])
        return (lateral.to_numpy(), np.abs(table["height_m"] - truth["height_m"]).to_numpy(),
                _angle_gap(table["azimuth_deg"], truth["azimuth_deg"]))

    lat0, h0, az0 = pose_errors(wrong)
    lat1, h1, az1 = pose_errors(fitted)
    # the recovered poses move toward the truth: azimuth error at least halved, and the 3-D
    # antenna position error (lateral and height together) reduced
    assert az1.mean() <= 0.5 * az0.mean(), (az0, az1)
    assert np.hypot(lat1, h1).mean() < np.hypot(lat0, h0).mean(), (lat0, h0, lat1, h1)
