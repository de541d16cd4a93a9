"""Importers: real slices (skipped without ../shared/data) and tiny generated files with bad rows."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.io

from learn.importers import (
    SplitConfig,
    import_drive_test,
    import_powder,
    import_rome_crop,
    import_rome_nbiot,
)
from tests.conftest import shared_data
from twin.errors import InputError
from twin.geo import SceneFrame

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
LON0, LAT0 = 12.465, 41.870


def _lonlat(x_m, y_m):
    return SceneFrame.from_lonlat(LON0, LAT0).to_lonlat(np.asarray(x_m, float), np.asarray(y_m, float))


# ---------------------------------------------------------------- rome crop


def _crop_csv(path, rows):
    cols = ["RSSI", "NSINR", "NRSRP", "NRSRQ", "BSLatitude", "BSLongitude", "UELatitude", "UELongitude"]
    pd.DataFrame(rows, columns=cols).to_csv(path, index=False)


def test_rome_crop_generated_bad_rows(tmp_path):
    bs_lon, bs_lat = _lonlat([0, 500], [0, 0])
    ue_lon, ue_lat = _lonlat([100, 200, 300], [50, 50, 50])
    rows = []
    for u in range(3):
        for b in range(2):
            rows.append([-60 - u, 1.0, -80 - b, -10, bs_lat[b], bs_lon[b], ue_lat[u], ue_lon[u]])
    rows.append([-62, 2.0, -81, -11, bs_lat[0], bs_lon[0], ue_lat[0], ue_lon[0]])  # duplicate (UE 0, BS 0)
    rows.append([-90, -90, -90, -90, bs_lat[1], bs_lon[1], ue_lat[2], ue_lon[2]])  # all sentinel: dropped
    rows.append([-61, np.nan, -90, -12, bs_lat[1], bs_lon[1], ue_lat[1], ue_lon[1]])  # dup + NaN + sentinel
    rows.append([-61, 1, -80, -12, np.nan, bs_lon[1], ue_lat[1], ue_lon[1]])  # no BS position
    _crop_csv(tmp_path / "crop.csv", rows)
    corpus, report = import_rome_crop(tmp_path / "crop.csv", tmp_path / "c.zarr", SplitConfig(test_frac=0.34, val_frac=0))
    assert report.rows_read == 10
    assert report.dropped["rows without a valid UE/BS latitude/longitude"] == 1
    assert report.dropped["rows without any valid feature"] == 1
    assert report.dropped["nrsrp_dbm: sentinel -90 read as missing"] == 2
    assert report.dropped["duplicate (UE, BS) rows merged by mean"] == 2  # (0,0), (1,1); (2,1) was dropped
    assert len(corpus) == 3 and report.events == 6
    b = corpus.batch(slice(None))
    scene = corpus.scene(0)
    np.testing.assert_allclose(scene.cell_xy_m[1] - scene.cell_xy_m[0], [500, 0], atol=0.5)
    # UE 0 / BS 0: mean of RSSI -60 and -62.
    u0 = int(np.argmin(b["position_xy_m"][:, 0]))
    k = list(b["cell_id"][u0]).index(0)
    assert b["features"][u0, k, 0] == pytest.approx(-61.0)
    assert set(corpus.attrs["import_report"]["dropped"]) == set(report.dropped)


def test_rome_crop_missing_column_and_empty(tmp_path):
    pd.DataFrame({"RSSI": [-60.0], "NSINR": [1.0]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match=r"bad\.csv: missing column\(s\) 'NRSRP'"):
        import_rome_crop(tmp_path / "bad.csv", tmp_path / "o.zarr")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty.csv: empty file"):
        import_rome_crop(tmp_path / "empty.csv", tmp_path / "o.zarr")
    assert not (tmp_path / "o.zarr").exists()


def test_rome_crop_wrong_units(tmp_path):
    bs_lon, bs_lat = _lonlat([0], [0])
    # NRSRP given in watts (1e-11 W = -80 dBm) instead of dBm.
    rows = [[-60, 1, 1e-11, -10, bs_lat[0], bs_lon[0], bs_lat[0] + 1e-4 * i, bs_lon[0]] for i in range(4)]
    _crop_csv(tmp_path / "w.csv", rows)
    with pytest.raises(InputError, match=r"w\.csv, column 'nrsrp_dbm'.*wrong units"):
        import_rome_crop(tmp_path / "w.csv", tmp_path / "o.zarr")


@pytest.mark.data
def test_rome_crop_real_slice(tmp_path):
    src = shared_data("rome_crop", "rome_crop_knn_ready.csv")
    pd.read_csv(src).head(400).to_csv(tmp_path / "slice.csv", index=False)
    corpus, report = import_rome_crop(tmp_path / "slice.csv", tmp_path / "c.zarr")
    assert report.rows_read == 400
    assert report.events + sum(report.dropped.get(k, 0) for k in report.dropped if "duplicate" in k) == 400
    assert corpus.feature_names == ["rssi_dbm", "nsinr_db", "nrsrp_dbm", "nrsrq_db"]
    assert np.isfinite(corpus.scene(0).cell_xy_m).all()


# ---------------------------------------------------------------- rome NB-IoT


def _nbiot_mat(path, locations):
    data = np.empty((len(locations), 16), dtype=object)
    for r, (lat, lon, cells) in enumerate(locations):
        data[r, 0], data[r, 1], data[r, 2] = lat, lon, np.asarray(cells, float)
        for c in range(3, 16):
            data[r, c] = 0.0
    scipy.io.savemat(path, {"dataSet": data})


def test_rome_nbiot_generated_bad_rows(tmp_path):
    lon, lat = _lonlat([0, 100, 200], [0, 0, 0])
    nan = np.nan
    #        NPCI eNB   RSSI   NSINR  NRSRP  NRSRQ  ToA     MNC campaign
    loc0 = [[1, 10, -60.0, 5.0, -70.0, -10.0, 100.0, 88, 1],
            [1, 10, -62.0, 5.0, -72.0, -10.0, 100.0, 88, 1],   # duplicate cell: merged
            [2, 11, nan, nan, nan, nan, 9999.6, 88, 1],          # ToA only (sentinel ToA)
            [1, 12, -65.0, 3.0, -75.0, -12.0, 200.0, 1, 1]]      # same NPCI, other operator
    loc1 = [[3, 13, -61.0, 4.0, -71.0, -11.0, 150.0, 10, 2]]
    loc_dup = [[4, 14, -66.0, 4.0, -76.0, -11.0, 150.0, 10, 2]]  # same position as loc1
    loc_bad = [[5, 15, -66.0, 4.0, -76.0, -11.0, 150.0, 10, 2]]
    _nbiot_mat(tmp_path / "n.mat", [(lat[0], lon[0], loc0), (lat[1], lon[1], loc1), (lat[1], lon[1], loc_dup),
                                    (nan, nan, loc_bad)])
    corpus, report = import_rome_nbiot(tmp_path / "n.mat", tmp_path / "n.zarr", splits=SplitConfig(val_frac=0))
    assert report.rows_read == 7
    assert report.dropped["cell rows seen only by ToA (no RF feature)"] == 1
    assert report.dropped["duplicate (point, cell) rows merged by mean"] == 1
    assert report.dropped["duplicate locations merged into one point"] == 1
    assert report.dropped["locations without a valid latitude/longitude"] == 1
    assert any("9999.6" in n for n in report.notes)
    assert len(corpus) == 2 and report.events == 4
    ids = set(corpus.scene(0).cell_id.tolist())
    assert ids == {88 * 100000 + 1, 1 * 100000 + 1, 10 * 100000 + 3, 10 * 100000 + 4}
    b = corpus.batch(slice(None))
    i = int(np.argmin(b["position_xy_m"][:, 0]))
    k = list(b["cell_id"][i]).index(8800001)
    assert b["features"][i, k, 0] == pytest.approx(-71.0)  # NRSRP mean of -70 and -72
    only88, rep88 = import_rome_nbiot(tmp_path / "n.mat", tmp_path / "n88.zarr", operators=[88])
    assert len(only88) == 1 and rep88.dropped["cell rows of operators other than [88]"] == 3


def test_rome_nbiot_not_a_mat(tmp_path):
    (tmp_path / "x.mat").write_text("hello")
    with pytest.raises(InputError, match="x.mat"):
        import_rome_nbiot(tmp_path / "x.mat", tmp_path / "o.zarr")
    scipy.io.savemat(tmp_path / "y.mat", {"other": np.zeros(3)})
    with pytest.raises(InputError, match="y.mat: no variable 'dataSet'"):
        import_rome_nbiot(tmp_path / "y.mat", tmp_path / "o.zarr")


@pytest.mark.data
def test_rome_nbiot_real_slice(tmp_path):
    src = shared_data("rome_nbiot", "Campaign_data_NBIoT_1_2_3_4_5_6.mat")
    data = scipy.io.loadmat(src, squeeze_me=True, struct_as_record=False)["dataSet"][:150]
    scipy.io.savemat(tmp_path / "slice.mat", {"dataSet": data})
    n_rows = sum(len(np.atleast_2d(r)) for r in data[:, 2])
    corpus, report = import_rome_nbiot(tmp_path / "slice.mat", tmp_path / "n.zarr")
    assert report.rows_read == n_rows
    assert report.events + sum(report.dropped.values()) == n_rows
    assert len(corpus) == 150 and corpus.feature_names == ["nrsrp_dbm", "nrsrq_db", "nsinr_db", "rssi_dbm"]
    assert np.isnan(corpus.scene(0).cell_xy_m).all()  # no base-station positions in this set


# ---------------------------------------------------------------- POWDER


def _powder_dir(path, n=6):
    path.mkdir()
    lon, lat = _lonlat([0, 300, 0], [0, 0, 300])
    rx = {f"rx-{c}": (float(lat[k]), float(lon[k])) for k, c in enumerate("abc")} | {"bus-1": None}
    (path / "location_coordinates.json").write_text(repr(rx))
    tlon, tlat = _lonlat(np.arange(n) * 40.0, np.full(n, 100.0))
    rows = []
    for i in range(n):
        rows.append({"timestamp": f"2022-01-01 00:00:{i:02d}", "rx-a": -70.0 - i, "rx-b": -101 if i == 0 else -80.0,
                     "rx-c": np.nan if i == 1 else -90.0, "bus-1_rss": -60.0, "bus-1_x": 1, "bus-1_y": 2,
                     "tx_x_coord": tlat[i], "tx_y_coord": tlon[i]})
    rows.append(dict(rows[2]))  # a repeated timestamp
    pd.DataFrame(rows).to_csv(path / "single_tx.csv", index=False)
    (path / "random_test.json").write_text(json.dumps({"2022-01-01 00:00:01": {}, "2022-01-01 00:00:09": {}}))
    (path / "grid_test.json").write_text(json.dumps({"2022-01-01 00:00:04": {}}))
    return path


def test_powder_generated(tmp_path):
    corpus, report = import_powder(_powder_dir(tmp_path / "p"), tmp_path / "p.zarr")
    assert report.rows_read == 7
    assert report.dropped["rows repeating a timestamp"] == 1
    assert report.dropped["readings of mobile (bus) receivers, whose positions move"] == 7
    assert report.dropped["receiver entries -101 (not received)"] == 1
    assert report.dropped["receiver entries without a number"] == 1
    assert len(corpus) == 6 and report.events == 6 * 3 - 2
    assert corpus.split_schemes == ["random", "spatial", "published_random", "published_grid"]
    assert len(corpus.split_indices("published_random", "test")) == 1
    assert any("1 test timestamps not among" in n for n in report.notes)
    assert corpus.attrs["cell_names"] == {"0": "rx-a", "1": "rx-b", "2": "rx-c"}
    np.testing.assert_allclose(corpus.scene(0).cell_xy_m[1], corpus.scene(0).cell_xy_m[0] + [300, 0], atol=1.0)


@pytest.mark.data
def test_powder_real_slice(tmp_path):
    src = shared_data("powder")
    d = tmp_path / "powder"
    d.mkdir()
    for name in ("location_coordinates.json", "random_test.json", "grid_test.json"):
        shutil.copy(src / name, d / name)
    pd.read_csv(src / "single_tx.csv").head(300).to_csv(d / "single_tx.csv", index=False)
    corpus, report = import_powder(d, tmp_path / "p.zarr")
    assert len(corpus) == 300 and report.rows_read == 300
    assert corpus.feature_units == ["dB (uncalibrated)"]
    b = corpus.batch(slice(None))
    assert np.nanmax(b["features"]) < 0 and np.nanmin(b["features"]) > -101


# ---------------------------------------------------------------- drive test


def _drive(tmp_path, rows, bs=None):
    pd.DataFrame(rows).to_csv(tmp_path / "drive.csv", index=False)
    blon, blat = _lonlat([0, 400], [0, 0])
    pd.DataFrame(bs or {"bs_id": [1, 2], "cell_id": [11, 12], "lon": blon, "lat": blat}).to_csv(
        tmp_path / "bs.csv", index=False)
    return tmp_path / "drive.csv", tmp_path / "bs.csv"


def test_drive_test_generated_bad_rows(tmp_path):
    lon, lat = _lonlat(np.arange(6) * 30.0, np.zeros(6))
    rows = []
    times = [0, 1, 2, 30, 31, 32]  # a 28 s gap: two sequences
    for p in range(6):
        for cell, base in ((11, -70.0), (12, -90.0)):
            rows.append({"time": times[p], "lon": lon[p], "lat": lat[p], "cell_id": cell,
                         "rsrp_dbm": base - p, "sinr_db": 5.0})
    rows.append({"time": 1, "lon": lon[1], "lat": lat[1], "cell_id": 11, "rsrp_dbm": -73.0, "sinr_db": 5.0})  # dup
    rows.append({"time": 2, "lon": lon[2], "lat": lat[2], "cell_id": 99, "rsrp_dbm": -80.0, "sinr_db": 1.0})  # unknown
    rows.append({"time": 3, "lon": np.nan, "lat": lat[2], "cell_id": 11, "rsrp_dbm": -80.0, "sinr_db": 1.0})
    rows.append({"time": 4, "lon": lon[3], "lat": lat[3], "cell_id": 12, "rsrp_dbm": np.nan, "sinr_db": 9999.6})
    drive, bs = _drive(tmp_path, rows)
    corpus, report = import_drive_test(drive, bs, tmp_path / "d.zarr", window_s=5.0,
                                       splits=SplitConfig(test_frac=0.34, val_frac=0))
    assert report.rows_read == 16
    assert report.dropped["rows of cells not in bs.csv"] == 1
    assert report.dropped["rows without a valid lon/lat"] == 1
    assert report.dropped["sinr_db: value outside [-40, 60] read as missing"] == 1
    assert report.dropped["rows without any valid feature"] == 1
    assert report.dropped["duplicate (point, cell) rows merged by mean"] == 1
    assert any("2 sequence(s)" in n for n in report.notes)
    assert len(corpus) == 6 and corpus.max_events == 6
    b = corpus.batch(slice(None))
    order = np.argsort(b["position_xy_m"][:, 0])
    # The third point of the first sequence sees its window's three points; the fourth starts anew.
    assert b["mask"][order[2]].sum() == 6 and b["mask"][order[3]].sum() == 2
    np.testing.assert_allclose(sorted(set(b["time_s"][order[2]][b["mask"][order[2]]])), [0, 1, 2])
    p1 = order[1]
    last = b["mask"][p1] & (b["time_s"][p1] == b["time_s"][p1][b["mask"][p1]].max())
    k = np.flatnonzero(last & (b["cell_id"][p1] == 11))[0]
    assert b["features"][p1, k, 0] == pytest.approx((-71.0 - 73.0) / 2)
    cells = corpus.scene(0).cell_xy_m
    np.testing.assert_allclose(cells[1] - cells[0], [400, 0], atol=0.5)
    np.testing.assert_allclose(b["position_xy_m"][order[0]] - cells[0], [0, 0], atol=0.5)


def test_drive_test_bad_input(tmp_path):
    lon, lat = _lonlat([0.0], [0.0])
    drive, bs = _drive(tmp_path, [{"time": 0, "lon": lon[0], "lat": lat[0], "rsrp_dbm": -80.0}])
    with pytest.raises(InputError, match=r"drive\.csv: missing column 'cell_id'"):
        import_drive_test(drive, bs, tmp_path / "o.zarr")
    drive, bs = _drive(tmp_path, [{"time": 0, "lon": lon[0], "lat": lat[0], "cell_id": 11, "rsrp_dbm": 1e-11}])
    with pytest.raises(InputError, match=r"drive\.csv, column 'rsrp_dbm'.*wrong units"):
        import_drive_test(drive, bs, tmp_path / "o.zarr")
    drive, bs = _drive(tmp_path, [{"time": "noon?", "lon": lon[0], "lat": lat[0], "cell_id": 11, "rsrp_dbm": -80}])
    with pytest.raises(InputError, match=r"drive\.csv row 2, column 'time'"):
        import_drive_test(drive, bs, tmp_path / "o.zarr")
    drive, bs = _drive(tmp_path, [{"time": 0, "lon": 385000.0, "lat": 4636000.0, "cell_id": 11, "rsrp_dbm": -80}])
    with pytest.raises(InputError, match=r"drive\.csv, column 'lat'.*not degrees"):
        import_drive_test(drive, bs, tmp_path / "o.zarr")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty.csv: empty file"):
        import_drive_test(tmp_path / "empty.csv", bs, tmp_path / "o.zarr")
    drive, _ = _drive(tmp_path, [{"time": 0, "lon": lon[0], "lat": lat[0], "cell_id": 11, "rsrp_dbm": -80.0}])
    pd.DataFrame({"cell_id": [11]}).to_csv(tmp_path / "bs2.csv", index=False)
    with pytest.raises(InputError, match=r"bs2\.csv: 2 problem\(s\)(.|\n)*'bs_id'(.|\n)*missing position columns"):
        import_drive_test(drive, tmp_path / "bs2.csv", tmp_path / "o.zarr")
    assert not (tmp_path / "o.zarr").exists()


def test_drive_test_with_scene_and_maps_gets_the_channels_twin_sample_writes(tmp_path):
    from tests.data.tiny_city.make import make_maps, make_scene
    from twin.corpus.sampler import RADIO_CHANNELS, SEMANTIC_CHANNELS, SampleConfig, sample
    from twin.radio.maps import open_maps
    from twin.scene.build import load_twin_scene

    scene_dir = make_scene(tmp_path / "scene")
    maps_url = make_maps(scene_dir, tmp_path / "maps.zarr")
    maps, scene = open_maps(maps_url), load_twin_scene(scene_dir)
    cells = maps.cell_ids[:2]
    pd.DataFrame({"bs_id": ["a", "b"], "cell_id": cells, "x_m": maps.cell_xy_m[:2, 0],
                  "y_m": maps.cell_xy_m[:2, 1]}).to_csv(tmp_path / "bs.csv", index=False)
    xy = np.array([[20.0, 50.0], [50.0, 50.0], [80.0, 50.0]])
    lon, lat = scene.frame.to_lonlat(xy[:, 0], xy[:, 1])
    rows = [{"time": t, "lon": lon[t], "lat": lat[t], "cell_id": c, "rsrp_dbm": -80.0 - t}
            for t in range(3) for c in cells]
    pd.DataFrame(rows).to_csv(tmp_path / "drive.csv", index=False)
    imported, _ = import_drive_test(tmp_path / "drive.csv", tmp_path / "bs.csv", tmp_path / "d.zarr",
                                    scene_dir=scene_dir, maps=maps_url)
    synthetic = sample(scene, maps_url, SampleConfig(n=20, features=("rsrp_dbm",)), tmp_path / "s.zarr")
    a, b = imported.scene(0), synthetic.scene(0)
    assert a.radio_channels == b.radio_channels == [c for c, _, _ in RADIO_CHANNELS]
    assert a.semantic_channels == b.semantic_channels == [c for c, _ in SEMANTIC_CHANNELS]
    np.testing.assert_array_equal(a.radio_maps, b.radio_maps)
    # Each imported cell's map is the traced RSRP map of that cell.
    for k, cid in enumerate(a.cell_id):
        np.testing.assert_array_equal(a.cell_maps[k, 0], maps["rsrp_dbm"][maps.cell_index(cid)])
    import zarr

    group = zarr.open_group(str(maps_url), mode="r+")
    arrays = dict(group.attrs["arrays"])
    arrays.pop("rsrp_dbm")  # maps traced without the metrics have no RSRP
    group.attrs["arrays"] = arrays
    with pytest.raises(InputError, match="no map of feature"):
        import_drive_test(tmp_path / "drive.csv", tmp_path / "bs.csv", tmp_path / "e.zarr",
                          scene_dir=scene_dir, maps=maps_url)


def test_drive_test_refuses_maps_of_other_sites(tmp_path):
    """Maps joined by cell_id alone would accept another BS file's maps: the sites must match."""
    from tests.data.tiny_city.make import make_maps, make_scene
    from twin.radio.maps import open_maps
    from twin.scene.build import load_twin_scene

    scene_dir = make_scene(tmp_path / "scene")
    maps_url = make_maps(scene_dir, tmp_path / "maps.zarr")
    maps, scene = open_maps(maps_url), load_twin_scene(scene_dir)
    cells = maps.cell_ids[:2]
    xy_sites = maps.cell_xy_m[:2].astype(float)
    xy = np.array([[20.0, 50.0], [50.0, 50.0]])
    lon, lat = scene.frame.to_lonlat(xy[:, 0], xy[:, 1])
    pd.DataFrame([{"time": t, "lon": lon[t], "lat": lat[t], "cell_id": c, "rsrp_dbm": -80.0}
                  for t in range(2) for c in cells]).to_csv(tmp_path / "drive.csv", index=False)
    moved = xy_sites.copy()
    moved[0] += (600.0, 340.0)  # 690 m away, same cell id
    pd.DataFrame({"bs_id": ["a", "b"], "cell_id": cells, "x_m": moved[:, 0], "y_m": moved[:, 1]}).to_csv(
        tmp_path / "other_bs.csv", index=False)
    with pytest.raises(InputError, match=rf"maps\.zarr and .*other_bs\.csv: .*1 cell\(s\).*\n  cell {cells[0]}: "
                                         r".*690 m apart") as err:
        import_drive_test(tmp_path / "drive.csv", tmp_path / "other_bs.csv", tmp_path / "d.zarr",
                          scene_dir=scene_dir, maps=maps_url)
    assert f"cell {cells[1]}" not in str(err.value)
    assert not (tmp_path / "d.zarr").exists()
    # within the tolerance the same maps are accepted
    near = xy_sites + (0.5, 0.0)
    pd.DataFrame({"bs_id": ["a", "b"], "cell_id": cells, "x_m": near[:, 0], "y_m": near[:, 1]}).to_csv(
        tmp_path / "bs.csv", index=False)
    import_drive_test(tmp_path / "drive.csv", tmp_path / "bs.csv", tmp_path / "d.zarr", scene_dir=scene_dir,
                      maps=maps_url)
