#!/bin/bash
# Base-to-novel in about a minute on CPU, with no download: make the toy dataset if it is
# missing, train on the base classes for two seeds, test on the novel classes, print the
# results table. Every step goes through the real per-trainer scripts.
#
#   scripts/demo_base2new.sh
#
# Environment (defaults in brackets): DATA [data], OUTPUT [output/demo], TRAINER [CoOp],
# CFG [tiny_ctxv1], DATASET [image_folder], SHOTS [4], SEEDS ["1 2"], PYTHON [python].
# TRAINER is the registered name; its scripts are the scripts/*/ folder whose scripts say
# TRAINER=<it>.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
export DATA="$(abspath "${DATA:-$REPO/data}")"
export OUTPUT="$(abspath "${OUTPUT:-$REPO/output/demo}")"
export SHOTS="${SHOTS:-4}"
TRAINER="${TRAINER:-CoOp}"
CFG="${CFG:-tiny_ctxv1}"
DATASET="${DATASET:-image_folder}"
SEEDS="${SEEDS:-1 2}"
PY="${PYTHON:-python}"
cd "$REPO"

scripts="$(dirname "$(grep -lx "TRAINER=$TRAINER" scripts/*/base2new_train.sh | head -n 1)")"
[[ "$scripts" != . ]] || { echo "ERROR: no scripts/*/ folder for TRAINER=$TRAINER" >&2; exit 1; }

if [[ "$DATASET" == image_folder && ! -d "$DATA/toy" ]]; then
    "$PY" -m datasets.make_toy_dataset --out "$DATA/toy"
fi

for seed in $SEEDS; do
    bash "$scripts/base2new_train.sh" "$DATASET" "$seed" "$CFG"
    bash "$scripts/base2new_test.sh" "$DATASET" "$seed" "$CFG"
done

# shellcheck disable=SC2086
"$PY" tools/results.py "$OUTPUT" --trainers "$TRAINER/$CFG" --datasets "$DATASET" --seeds $SEEDS
