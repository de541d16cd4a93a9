"""calibrate fit / check / simulate on a small box scene: outputs, skips, errors, CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from calibrate.checks import check, knn_errors
from calibrate.drive_test import clean_drive_test, read_drive_test, write_drive_test
from calibrate.fit import CalibrationConfig, calibrate, plan_sites
from calibrate.simulate import road_points, simulate_drive_test
from cli.calibrate import main
from tests.scenes import make_box_scene
from twin.errors import InputError
from twin.radio.tracer import TraceConfig, Tracer
from twin.scene.build import load_twin_scene

FAST = {"samples_per_tx": 20_000, "cell_size_m": 10.0}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A box scene, a true BS file (two sectors of site a, one cell of site b) and its drive test."""
    root = tmp_path_factory.mktemp("cal")
    scene = load_twin_scene(make_box_scene(root / "scene", half_size_m=250.0))
    truth = pd.DataFrame({"bs_id": ["a", "a", "b"], "cell_id": [1, 2, 3], "x_m": [-20.0, -20.0, 150.0],
                          "y_m": [-20.0, -20.0, 150.0], "height_m": 35.0, "azimuth_deg": [45.0, 225.0, 270.0],
                          "frequency_hz": [1.8e9, 1.8e9, 1.85e9], "owner": ["op1", "op1", "op2"]})
    truth.to_csv(root / "truth.csv", index=False)
    tracer = Tracer(scene, TraceConfig(samples_per_tx=100_000, cell_size_m=5.0, seed=7))
    rows = simulate_drive_test(scene, root / "truth.csv", tracer=tracer, spacing_m=5.0, radius_m=400.0,
                               sigma_db=2.0, seed=1)
    write_drive_test(rows, root / "dt.csv")
    return scene, root, truth, rows


def test_simulated_drive_test_is_in_the_drive_test_format(case):
    scene, root, truth, rows = case
    assert list(rows.columns) == ["time", "lon", "lat", "cell_id", "rssi_dbm", "rsrp_dbm", "rsrq_db", "sinr_db"]
    assert set(rows["cell_id"]) == {1, 2, 3}
    assert (np.diff(rows["time"].to_numpy()) >= 0).all()
    np.testing.assert_allclose(rows["rssi_dbm"] % 1.0, 0.0)  # quantized to 1 dB
    dt = read_drive_test(root / "dt.csv", scene, truth)
    assert len(dt.dropped) == 0
    # points lie on the scene's two roads (the axes)
    assert (np.minimum(np.abs(dt.rows["x_m"]), np.abs(dt.rows["y_m"])) < 0.5).all()
    pts = road_points(scene, 5.0)
    assert len(pts) == 2 * 99 - 1  # every 5 m along two 490 m roads (off the border), the crossing once
    assert len(np.unique(dt.rows[["x_m", "y_m"]].round(3) + 0.0, axis=0)) <= len(pts)


def test_fit_writes_calibrated_file_and_report(case, tmp_path):
    scene, root, truth, _ = case
    wrong = truth.copy()
    wrong.loc[wrong["bs_id"] == "a", "azimuth_deg"] += 100.0  # both sectors turned; 225 -> 325
    wrong.to_csv(tmp_path / "bs.csv", index=False)
    cfg = CalibrationConfig(calls=8, initial_points=3, params="azimuth", metric="rssi", **FAST)
    res = calibrate(scene.path, tmp_path / "bs.csv", root / "dt.csv", tmp_path / "cal.csv", tmp_path / "report",
                    cfg, sites=["a"])
    a, b = res.sites
    assert a.status == "fitted" and b.status == "skipped" and b.reason == "not selected (--sites)"
    assert len(a.evaluations) == 8
    assert a.rho_after >= a.rho_before
    assert a.rho_before == pytest.approx(a.evaluations[0].rho)
    out = pd.read_csv(tmp_path / "cal.csv")
    assert {"bs_id", "cell_id", "lon", "lat", "x_m", "y_m", "height_m", "azimuth_deg", "owner",
            "calibrated"} <= set(out.columns)
    assert out["calibrated"].tolist() == [True, True, False]
    assert out["owner"].tolist() == ["op1", "op1", "op2"]
    # the sectors turned together: still 180° apart; site b untouched
    assert (out["azimuth_deg"][1] - out["azimuth_deg"][0]) % 360 == pytest.approx(180.0)
    assert out["azimuth_deg"][0] == pytest.approx(a.after["azimuth"])
    assert out["azimuth_deg"][2] == 270.0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["sites"][0]["evaluations"] == 8 and len(report["sites"][0]["evaluation_log"]) == 8
    assert report["config"]["calls"] == 8
    assert report["space"]["azimuth"]["circular"] is True
    for name in ("report.md", "dropped_rows.csv", "convergence_a.png", "scatter_a.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert "| a | 1, 2 |" in (tmp_path / "report" / "report.md").read_text()
    # outputs exist now: a second run refuses them before any tracing
    with pytest.raises(FileExistsError):
        calibrate(scene.path, tmp_path / "bs.csv", root / "dt.csv", tmp_path / "cal.csv", None, cfg)


def test_skip_reasons_and_errors(case):
    scene, _, truth, rows = case
    table = pd.concat([truth, pd.DataFrame({"bs_id": ["c", "d"], "cell_id": [4, 5], "x_m": [0.0, 10.0],
                                            "y_m": [0.0, 10.0]})], ignore_index=True)
    at = rows.drop_duplicates(["lon", "lat"]).iloc[:12]
    extra = pd.DataFrame({"time": 0.0, "lon": at["lon"], "lat": at["lat"], "cell_id": 5, "rssi_dbm": -70.0})
    few = rows[rows["cell_id"] == 2].iloc[:4]
    dt = clean_drive_test(pd.concat([rows[rows["cell_id"] != 2], few, extra], ignore_index=True), scene, table)
    todo, skipped = plan_sites(table, dt, "rssi", min_points=10)
    assert sorted(todo) == ["a", "b"] and [p.cell_id for p in todo["a"]] == [1]
    assert skipped["a"][2] == "4 drive-test points, fewer than min_points=10"
    assert skipped["c"][4] == "no drive-test rows with rssi_dbm"
    assert skipped["d"][5].startswith("constant measurements (rssi_dbm = -70 at all 12 points)")
    # nothing left to fit: one clear error naming each site's reasons
    only = clean_drive_test(extra, scene, table)
    with pytest.raises(InputError, match="no site can be calibrated .*d: cell 5: constant measurements"):
        calibrate(scene, table, only, config=CalibrationConfig(calls=5, initial_points=2, **FAST))


def test_bad_config_is_a_clear_error():
    with pytest.raises(InputError, match="x=50:-50: inverted"):
        CalibrationConfig(bounds="x=50:-50")
    with pytest.raises(InputError, match="calls: 5 must exceed initial_points"):
        CalibrationConfig(calls=5, initial_points=10)


def test_cli_fit_and_errors(case, tmp_path):
    scene, root, truth, _ = case
    truth.to_csv(tmp_path / "bs.csv", index=False)
    base = ["fit", "--scene", str(scene.path), "--bs-file", str(tmp_path / "bs.csv"), "--drive-test",
            str(root / "dt.csv"), "--out", str(tmp_path / "cal.geojson"), "--report", str(tmp_path / "rep")]
    bad = CliRunner().invoke(main, [*base, "--bounds", "h=90:30"])
    assert bad.exit_code == 2 and "Error: --bounds: h=90:30: inverted" in bad.output
    assert not (tmp_path / "cal.geojson").exists()
    ok = CliRunner().invoke(main, [*base, "--calls", "4", "--initial-points", "2", "--params", "h",
                                   "--samples-per-tx", "20000", "--cell-size", "10", "--sites", "b",
                                   "--truth", str(root / "truth.csv")])
    assert ok.exit_code == 0, ok.output
    # the BS file is the truth: zero errors before; only b's height may move
    assert f"a against {root / 'truth.csv'}: position 0.0 -> 0.0 m, height 0.0 -> 0.0 m, azimuth 0.0 -> 0.0 deg" \
        in ok.output
    assert f"b against {root / 'truth.csv'}: position 0.0 -> 0.0 m, height 0.0 -> " in ok.output
    assert "calibrated 1 of 2 sites" in ok.output
    feats = json.loads((tmp_path / "cal.geojson").read_text())["features"]
    assert [f["properties"]["calibrated"] for f in feats] == [False, False, True]
    # a YAML config: its keys apply unless a flag is typed; an unknown key is a clean error
    (tmp_path / "cfg.yaml").write_text("calibrate:\n  calls: 3\n  initial_points: 1\n  params: h\n"
                                       "  samples_per_tx: 20000\n  cell_size_m: 10\n")
    again = CliRunner().invoke(main, [*base, "--config", str(tmp_path / "cfg.yaml"), "--sites", "a",
                                      "--overwrite"])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["sites"][0]["evaluations"] == 3
    (tmp_path / "bad.yaml").write_text("calibrate:\n  callz: 3\n")
    bad = CliRunner().invoke(main, [*base, "--config", str(tmp_path / "bad.yaml"), "--overwrite"])
    assert bad.exit_code == 2 and "unknown key(s) callz" in bad.output
    chk = CliRunner().invoke(main, ["check", "--scene", str(scene.path), "--bs-file", str(tmp_path / "bs.csv"),
                                    "--drive-test", str(root / "dt.csv"), "--report", str(tmp_path / "chk"),
                                    "--samples-per-tx", "20000"])
    assert chk.exit_code == 0, chk.output
    assert "[S→R]" in chk.output and (tmp_path / "chk" / "check.md").is_file()
    sim = CliRunner().invoke(main, ["simulate", "--scene", str(scene.path), "--bs-file", str(tmp_path / "bs.csv"),
                                    "--out", str(tmp_path / "sim.parquet"), "--samples-per-tx", "20000",
                                    "--cell-size", "10", "--spacing", "20"])
    assert sim.exit_code == 0, sim.output
    simulated = pd.read_parquet(tmp_path / "sim.parquet")
    assert set(simulated["cell_id"]) <= {1, 2, 3} and len(simulated) > 20
    for cmd in ("fit", "check", "simulate"):
        text = CliRunner().invoke(main, [cmd, "--help"]).output
        assert "Example:" in text.strip().splitlines()[-3] or "Example:" in text


def test_knn_errors_exact():
    train_xy = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    train_fp = np.array([[-50.0, -90.0], [-90.0, -50.0], [-70.0, -70.0]])
    test_fp = np.array([[-51.0, -89.0], [-88.0, -52.0]])
    err = knn_errors(train_fp, train_xy, test_fp, np.array([[0.0, 10.0], [100.0, 0.0]]), k=1)
    np.testing.assert_allclose(err, [10.0, 0.0])
    err2 = knn_errors(train_fp, train_xy, test_fp[:1], np.array([[0.0, 0.0]]), k=2)
    assert err2[0] == pytest.approx(np.hypot(0.0, 50.0))  # mean of (0,0) and (0,100)


def test_check_reports_rho_and_four_knn_combinations(case, tmp_path):
    scene, root, truth, _ = case
    res = check(scene, truth, root / "dt.csv", trace_config=TraceConfig(**{"samples_per_tx": 100_000, "cell_size_m": 5.0}),
                report_dir=tmp_path / "check", k=3)
    assert set(res.knn_m) == {"R→R", "S→S", "R→S", "S→R"}
    assert min(res.rho_cells.values()) > 0.6  # the true BS file against its own (noisy) drive test
    assert set(res.rho_sites) == {"a", "b"}
    s = json.loads((tmp_path / "check" / "check.json").read_text())
    assert s["locations"] == res.n_locations and s["train"] + s["test"] == s["locations"]
    # the street split: the two roads of the box scene, one held out whole
    ss = s["street_split"]
    assert ss["locations_train"] + ss["locations_test"] == s["locations"]
    assert ss["streets_train"] >= 1 and ss["streets_test"] >= 1 and set(res.knn_street_m) == set(res.knn_m)
    assert "street split" in (tmp_path / "check" / "check.md").read_text()
    assert (tmp_path / "check" / "check.png").stat().st_size > 0
    # a wrong BS file correlates worse
    wrong = truth.assign(azimuth_deg=(truth["azimuth_deg"] + 180.0) % 360.0)
    worse = check(scene, wrong, root / "dt.csv", trace_config=TraceConfig(samples_per_tx=100_000, cell_size_m=5.0))
    assert np.mean(list(worse.rho_cells.values())) < np.mean(list(res.rho_cells.values())) - 0.1


@pytest.mark.slow
def test_dask_workers_give_the_serial_result(case, tmp_path):
    """Two Dask worker processes, each loading the scene once, fit the sites as one process does."""
    scene, root, truth, _ = case
    wrong = truth.assign(azimuth_deg=(truth["azimuth_deg"] + 50.0) % 360.0)
    cfg = CalibrationConfig(calls=5, initial_points=2, params="azimuth", **FAST)
    serial = calibrate(scene, wrong, root / "dt.csv", config=cfg)
    parallel = calibrate(scene, wrong, root / "dt.csv", config=cfg, workers=2)
    assert [s.bs_id for s in parallel.sites] == ["a", "b"]
    for s, p in zip(serial.sites, parallel.sites, strict=True):
        assert p.after["azimuth"] == pytest.approx(s.after["azimuth"])
        assert p.rho_after == pytest.approx(s.rho_after)
    pd.testing.assert_frame_equal(serial.table, parallel.table)


@pytest.mark.slow
@pytest.mark.slurm
def test_calibrate_fit_on_slurm_jobs_gives_the_serial_result(case, tmp_path):
    """`calibrate fit --cluster slurm --workers 2`: the sites run in two real batch jobs (twin generate's engine)."""
    from tests.test_generate import needs_slurm, slurm_jobs

    needs_slurm()
    scene, root, truth, _ = case
    wrong = truth.assign(azimuth_deg=(truth["azimuth_deg"] + 50.0) % 360.0)
    wrong.to_csv(tmp_path / "bs.csv", index=False)
    cfg = CalibrationConfig(calls=5, initial_points=2, params="azimuth", **FAST)
    serial = calibrate(scene, wrong, root / "dt.csv", config=cfg)
    (tmp_path / "cfg.yaml").write_text(
        "calibrate:\n  calls: 5\n  initial_points: 2\n  params: azimuth\n  samples_per_tx: 20000\n"
        f"  cell_size_m: 10\ncluster:\n  memory: 3GB\n  walltime: '00:20:00'\n  log_directory: {tmp_path / 'logs'}\n")
    before = set(slurm_jobs(""))
    result = CliRunner().invoke(main, ["fit", "--scene", str(scene.path), "--bs-file", str(tmp_path / "bs.csv"),
                                       "--drive-test", str(root / "dt.csv"), "--out", str(tmp_path / "cal.csv"),
                                       "--report", str(tmp_path / "rep"),
                                       "--config", str(tmp_path / "cfg.yaml"), "--cluster", "slurm",
                                       "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "calibrated 2 of 2 sites" in result.output
    assert list((tmp_path / "logs").glob("*.err")) or list((tmp_path / "logs").glob("*.out"))  # real jobs ran
    fitted = pd.read_csv(tmp_path / "cal.csv")
    np.testing.assert_allclose(fitted["azimuth_deg"], serial.table["azimuth_deg"], atol=1e-6)
    assert set(slurm_jobs("")) <= before  # the jobs are gone once the fit returns


def test_profile_warns_when_a_parameter_is_not_identifiable(case, tmp_path):
    """The RMSE's fitted offset absorbs a power offset exactly: power's profile is flat, azimuth's is not."""
    scene, root, truth, _ = case
    cfg = CalibrationConfig(calls=6, initial_points=2, params="azimuth,power", metric="rsrp", objective="rmse",
                            profile_steps=1, **FAST)
    with pytest.warns(UserWarning, match="site b: power is not identifiable"):
        res = calibrate(scene, truth, root / "dt.csv", config=cfg, sites=["b"], report_dir=tmp_path / "rep")
    b = res.sites[1]
    assert len(b.evaluations) == 6  # the profile's evaluations are extra, kept apart
    assert b.pinned["power"]["flat"] and not b.pinned["azimuth"]["flat"]
    losses = [loss for _, loss, _ in b.profile["power"]]
    assert max(losses) - min(losses) < 1e-6  # ±2 dB of power: the same RMSE
    assert [d for d, _, _ in b.profile["azimuth"]] == [-10.0, 0.0, 10.0]
    assert b.warnings and "power" in b.warnings[0]
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "**flat**" in md and "## Warnings" in md
    assert (tmp_path / "rep" / "profile_b.png").stat().st_size > 0
    log = json.loads((tmp_path / "rep" / "report.json").read_text())["sites"][1]
    assert log["objective"] == "rmse" and log["evaluation_log"][0]["stage"] == "global"
    assert log["rmse_after_db"] <= log["rmse_before_db"] + 1e-9


def test_street_split_holds_out_whole_streets():
    from calibrate.checks import street_split

    street = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    held = street_split(street, 0.3, seed=0)
    for s in np.unique(street):  # a street is on one side only
        assert len(set(held[street == s])) == 1
    assert 0.3 * len(street) <= held.sum() < len(street)
    assert (~held).any()
    assert not street_split(np.zeros(5, int), 0.5, 0).any()  # one street: nothing to hold out


def test_truth_errors_before_and_after():
    from calibrate.known_truth import truth_errors

    truth = pd.DataFrame({"bs_id": ["a", "a", "b"], "x_m": [0.0, 0.0, 100.0], "y_m": [0.0, 0.0, 0.0],
                          "height_m": [30.0, 30.0, 40.0], "azimuth_deg": [10.0, 130.0, 0.0]})
    before = truth.assign(x_m=truth["x_m"] + 3.0, y_m=truth["y_m"] + 4.0, height_m=truth["height_m"] + 12.0,
                          azimuth_deg=(truth["azimuth_deg"] - 20.0) % 360.0)
    after = truth.assign(x_m=truth["x_m"] + 1.0, azimuth_deg=(truth["azimuth_deg"] + 5.0) % 360.0)
    e = truth_errors(before, after, truth).set_index("bs_id")
    assert list(e.index) == ["a", "b"]
    np.testing.assert_allclose(e["lateral_m_before"], [5.0, 5.0])
    np.testing.assert_allclose(e["lateral_m_after"], [1.0, 1.0])
    np.testing.assert_allclose(e["height_m_before"], [12.0, 12.0])
    np.testing.assert_allclose(e["azimuth_deg_before"], [20.0, 20.0])  # 350 vs 10: 20 degrees, not 340
    np.testing.assert_allclose(e["azimuth_deg_after"], [5.0, 5.0])
    with pytest.raises(InputError, match="--truth: sites c are not in the BS file"):
        truth_errors(before, after, pd.concat([truth, truth.iloc[:1].assign(bs_id="c")]))


def test_write_offset_recovers_a_wrong_transmit_power(case, tmp_path):
    """Known truth: the file's site b transmits 6 dB below the truth's; the fitted offset puts it back.

    The offset also holds what the fit's coarser rays and cells lose against the drive test's
    trace (the same at both powers), so the written powers of both files agree, 6 dB apart from
    where they started.
    """
    scene, root, truth, _ = case
    wrong = truth.copy()
    wrong["power_dbm"] = [43.0, 43.0, 37.0]
    cfg = CalibrationConfig(calls=4, initial_points=2, params="azimuth", metric="rssi", objective="rmse",
                            bounds="azimuth=265:275", profile_steps=0, write_offset=True, **FAST)
    res = calibrate(scene, wrong, root / "dt.csv", tmp_path / "cal.csv", config=cfg, sites=["b"])
    ref = calibrate(scene, truth, root / "dt.csv", config=cfg, sites=["b"])
    b, b_ref = res.sites[1], ref.sites[1]
    # fitted on RSSI, the power correction is RSRP's offset at the result (RSSI's holds site a's power too)
    assert b.power_offset_db - b_ref.power_offset_db == pytest.approx(6.0, abs=0.5)
    assert np.isnan(res.sites[0].power_offset_db)
    out = pd.read_csv(tmp_path / "cal.csv")
    assert out["power_dbm"].tolist()[:2] == [43.0, 43.0]  # site a not fitted: its power unchanged
    assert out["power_dbm"][2] == pytest.approx(37.0 + b.power_offset_db)
    assert out["power_dbm"][2] == pytest.approx(ref.table["power_dbm"].tolist()[2], abs=0.5)
    off = calibrate(scene, wrong, root / "dt.csv", config=replace(cfg, write_offset=False), sites=["b"])
    assert off.table["power_dbm"].tolist()[2] == 37.0  # the default keeps the file's power


def test_pose_prior_holds_the_fit_at_the_file(case, tmp_path):
    """Site b's file azimuth is 40° off: free, the fit turns it; under a 1° prior the file's pose wins."""
    scene, root, truth, _ = case
    wrong = truth.copy()
    wrong.loc[2, "azimuth_deg"] = 310.0
    cfg = CalibrationConfig(calls=8, initial_points=3, params="azimuth", metric="rsrp", objective="huber",
                            profile_steps=0, **FAST)
    free = calibrate(scene, wrong, root / "dt.csv", config=cfg, sites=["b"]).sites[1]
    assert abs(free.after["azimuth"] - 310.0) > 10.0 and free.loss_after < free.loss_before
    held = calibrate(scene, wrong, root / "dt.csv", config=replace(cfg, prior_azimuth_deg=1.0),
                     sites=["b"]).sites[1]
    assert abs(held.after["azimuth"] - 310.0) < 2.0
    ev = held.evaluations
    assert ev[0].prior_chi2 == 0.0 and ev[0].loss == pytest.approx(ev[0].huber_db)
    moved = [e for e in ev[1:] if abs(e.values["azimuth"] - 310.0) > 2.0]
    assert moved and all(e.prior_chi2 > 1.0 and e.loss > e.huber_db for e in moved)
