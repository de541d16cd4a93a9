"""Tiny OSM files made in code: the shapes real extracts contain, with known answers.

Coordinates are metres east/north of (24.944, 60.1716) in central Helsinki, converted to
lon/lat with the scene transform, so expected areas and heights are exact.
"""

from __future__ import annotations

import json
from pathlib import Path

from twin.geo import SceneFrame

ORIGIN = (24.944, 60.1716)
FRAME = SceneFrame.from_lonlat(*ORIGIN)

# name -> (outer ring, holes, tags); rings in scene metres, counter-clockwise.
BUILDINGS = {
    "square_ft": ([(0, 0), (20, 0), (20, 20), (0, 20)], [], {"building": "yes", "height": "40 ft"}),
    "concave_l": ([(40, 0), (80, 0), (80, 10), (50, 10), (50, 40), (40, 40)], [],
                  {"building": "apartments", "building:levels": "4", "roof:levels": "1"}),
    "courtyard": ([(100, 0), (160, 0), (160, 60), (100, 60)], [[(115, 15), (115, 45), (145, 45), (145, 15)]],
                  {"building": "yes", "height": "21 m", "building:material": "brick"}),
    "sliver": ([(0, 100), (30, 100), (30, 100.2), (0, 100.2)], [], {"building": "yes"}),
    "bowtie": ([(200, 0), (220, 20), (220, 0), (200, 20)], [], {"building": "garage"}),
}
ROAD = [(-20, -10), (180, -10)]
AREA_M = (-30.0, -30.0, 240.0, 130.0)


def lonlat(points):
    xs, ys = zip(*points, strict=True)
    lon, lat = FRAME.to_lonlat(list(xs), list(ys))
    return list(zip(lon.tolist(), lat.tolist(), strict=True))


def area_bbox() -> tuple[float, float, float, float]:
    (w, s), (e, n) = lonlat([AREA_M[:2], AREA_M[2:]])
    return (w, s, e, n)


def write_osm_xml(path: Path) -> Path:
    """An .osm XML file: ways for simple buildings, a multipolygon relation for the courtyard."""
    nodes, ways, relations = [], [], []
    next_id = [1]

    def node_ids(ring):
        ids = []
        for lon, lat in lonlat(ring):
            nodes.append(f'  <node id="{next_id[0]}" version="1" lat="{lat:.9f}" lon="{lon:.9f}"/>')
            ids.append(next_id[0])
            next_id[0] += 1
        return [*ids, ids[0]]

    def way(refs, tags, way_id):
        nds = "".join(f'<nd ref="{r}"/>' for r in refs)
        tag_xml = "".join(f'<tag k="{k}" v="{v}"/>' for k, v in tags.items())
        ways.append(f'  <way id="{way_id}" version="1">{nds}{tag_xml}</way>')

    way_id = 1000
    for name, (outer, holes, tags) in BUILDINGS.items():
        way_id += 1
        if holes:
            way(node_ids(outer), {}, way_id)
            inner_ids = []
            for hole in holes:
                way_id += 1
                way(node_ids(hole), {}, way_id)
                inner_ids.append(way_id)
            members = f'<member type="way" ref="{way_id - len(holes)}" role="outer"/>' + "".join(
                f'<member type="way" ref="{i}" role="inner"/>' for i in inner_ids)
            tag_xml = "".join(f'<tag k="{k}" v="{v}"/>' for k, v in {**tags, "type": "multipolygon", "name": name}.items())
            relations.append(f'  <relation id="{way_id + 5000}" version="1">{members}{tag_xml}</relation>')
        else:
            way(node_ids(outer), {**tags, "name": name}, way_id)
    road_refs = node_ids(ROAD)[:-1]
    way(road_refs, {"highway": "residential", "name": "Testikatu"}, 9000)
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="tests">\n'
                    + "\n".join(nodes + ways + relations) + "\n</osm>\n")
    return path


def write_geojson(path: Path) -> Path:
    """The same buildings and road as a GeoJSON FeatureCollection."""
    features = []
    for k, (name, (outer, holes, tags)) in enumerate(BUILDINGS.items()):
        rings = [lonlat(outer + outer[:1])] + [lonlat(h + h[:1]) for h in holes]
        features.append({"type": "Feature", "properties": {**tags, "name": name, "osm_id": k + 1},
                         "geometry": {"type": "Polygon", "coordinates": rings}})
    features.append({"type": "Feature", "properties": {"highway": "residential", "osm_id": 99},
                     "geometry": {"type": "LineString", "coordinates": lonlat(ROAD)}})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path
