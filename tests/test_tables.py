"""One point-table reader for BS files and drive tests: formats, coordinates and errors."""

from __future__ import annotations

import json

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import Point

from twin.errors import InputError, StoreNotFoundError
from twin.tables import read_point_table


def test_csv_tsv_and_strings(tmp_path):
    pd.DataFrame({"cell_id": [1, 2], "rssi_dbm": [-70.5, -80.0]}).to_csv(tmp_path / "a.csv", index=False)
    table = read_point_table(tmp_path / "a.csv")
    assert table["rssi_dbm"].tolist() == [-70.5, -80.0]
    (tmp_path / "a.tsv").write_text("cell_id\trssi_dbm\n1\t-70.5\n")
    assert read_point_table(tmp_path / "a.tsv")["rssi_dbm"].tolist() == [-70.5]
    text = read_point_table(tmp_path / "a.csv", as_strings=True)
    assert text["rssi_dbm"].tolist() == ["-70.5", "-80.0"]


def test_geojson_points_become_lon_lat(tmp_path):
    features = [{"type": "Feature", "properties": {"cell_id": 7}, "geometry": {"type": "Point", "coordinates": [24.9, 60.1]}}]
    (tmp_path / "p.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    table = read_point_table(tmp_path / "p.geojson")
    assert table.to_dict("records") == [{"cell_id": 7, "lon": 24.9, "lat": 60.1}]
    features.append({"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}})
    (tmp_path / "bad.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    with pytest.raises(InputError, match=r"bad\.geojson: 1 problem\(s\)\n  feature 2: geometry must be a Point"):
        read_point_table(tmp_path / "bad.geojson")
    (tmp_path / "x.geojson").write_text("{not json")
    with pytest.raises(InputError, match="not valid GeoJSON"):
        read_point_table(tmp_path / "x.geojson")


def test_geoparquet_points_in_any_crs_become_wgs84(tmp_path):
    gdf = gpd.GeoDataFrame({"cell_id": [3]}, geometry=[Point(24.9, 60.1)], crs="EPSG:4326").to_crs("EPSG:32635")
    gdf.to_parquet(tmp_path / "p.parquet")
    table = read_point_table(tmp_path / "p.parquet")
    assert table["lon"].iloc[0] == pytest.approx(24.9) and table["lat"].iloc[0] == pytest.approx(60.1)
    pd.DataFrame({"lon": [1.0], "lat": [2.0]}).to_parquet(tmp_path / "plain.parquet")
    assert read_point_table(tmp_path / "plain.parquet")["lat"].tolist() == [2.0]


def test_errors_name_the_file(tmp_path):
    with pytest.raises(StoreNotFoundError, match="missing.csv: no such BS file"):
        read_point_table(tmp_path / "missing.csv", "BS")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(InputError, match="e.csv: empty file; expected a header with time, lon"):
        read_point_table(tmp_path / "e.csv", expected="time, lon, lat")
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(InputError, match=r"d\.xlsx: unknown drive-test format '\.xlsx'"):
        read_point_table(tmp_path / "d.xlsx", "drive-test")
