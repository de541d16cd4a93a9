"""Drive-test ingest on real measurements: the Rome NB-IoT crop of seed 004's Dataset A."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calibrate.drive_test import clean_drive_test
from tests.conftest import shared_data
from tests.scenes import make_box_scene
from twin.scene.build import load_twin_scene


@pytest.mark.data
def test_rome_crop_ingest(tmp_path):
    raw = pd.read_csv(shared_data("rome_crop", "rome_crop_knn_ready.csv"))
    # the file keys base stations by their position; cell ids are what the BS file and drive test share
    cell, sites = pd.factorize(raw["BS_location"])
    raw["cell_id"] = cell + 1
    bs = raw.drop_duplicates("cell_id")
    scene = load_twin_scene(make_box_scene(
        tmp_path / "rome", half_size_m=1200.0, cell_size_m=10.0, boxes=(),
        origin_lonlat=(float(raw["UELongitude"].mean()), float(raw["UELatitude"].mean()))))
    table = pd.DataFrame({"bs_id": bs["BS_location"], "cell_id": bs["cell_id"],
                          "lon": bs["BSLongitude"], "lat": bs["BSLatitude"]})
    dt = clean_drive_test(raw, scene, table, metric="rssi")
    s = dt.summary()
    # aliases: RSSI -> rssi_dbm, NRSRP -> rsrp_dbm, UELatitude/UELongitude -> lat/lon
    assert {"rssi_dbm", "rsrp_dbm", "rsrq_db", "sinr_db"} <= set(dt.rows.columns)
    assert s["rows_read"] == 7307 and len(s["rows_per_cell"]) == len(sites) == 10
    assert s["rows_kept"] >= 0.95 * s["rows_read"], s
    assert (dt.rows["rsrp_dbm"] < dt.rows["rssi_dbm"]).all()
    # the crop is about 1.4 km x 1.3 km around the origin
    assert np.abs(dt.rows[["x_m", "y_m"]].to_numpy()).max() < 1100.0
    # no time column: repeat visits of a location are kept, only spikes go
    assert set(s["dropped_by_reason"]) <= {"outlier"} and s["rows_dropped"] < 20, s
