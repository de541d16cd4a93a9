#!/usr/bin/env bash
# The posterior model on the real sets (docs/benchmarks.md, "Posterior model"):
#   bash bench/bench_learn_real.sh [DATA_DIR] [OUT_DIR]
# Needs the demo corpus (make demo): pretrains the small preset on it for 3 epochs, then
# judges it zero-shot, fine-tuned and from scratch on Rome NB-IoT, and from scratch on POWDER.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
O=${2:-out/bench_real}
B=.venv/bin
mkdir -p "$O"
$B/learn pretrain --data out/demo/corpus.zarr --config small --split spatial --epochs 3 --out "$O/pre_helsinki" --overwrite
PRE="$O/pre_helsinki/best.pt"
$B/learn import rome-nbiot "$DATA/rome_nbiot/Campaign_data_NBIoT_1_2_3_4_5_6.mat" --out "$O/nbiot.zarr" --overwrite
$B/learn import powder "$DATA/powder" --out "$O/powder.zarr" --overwrite
$B/learn eval --data "$O/nbiot.zarr" --split spatial --ckpt "$PRE" --json > "$O/nbiot_zeroshot.json"
$B/learn finetune --init "$PRE" --data "$O/nbiot.zarr" --config finetune --split spatial --epochs 20 --out "$O/ft_nbiot" --overwrite
$B/learn eval --data "$O/nbiot.zarr" --split spatial --ckpt "$O/ft_nbiot/best.pt" --json > "$O/nbiot_ft.json"
$B/learn pretrain --data "$O/nbiot.zarr" --config small --split spatial --epochs 20 --out "$O/scratch_nbiot" --overwrite
$B/learn eval --data "$O/nbiot.zarr" --split spatial --ckpt "$O/scratch_nbiot/best.pt" --json > "$O/nbiot_scratch.json"
$B/learn pretrain --data "$O/powder.zarr" --config small --split published_grid --epochs 10 --out "$O/scratch_powder" --overwrite
$B/learn eval --data "$O/powder.zarr" --split published_grid --ckpt "$O/scratch_powder/best.pt" --json > "$O/powder_scratch_grid.json"
echo "results: $O/*.json"
