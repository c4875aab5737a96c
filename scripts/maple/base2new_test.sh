#!/bin/bash
# MaPLe, base-to-novel: evaluate the last epoch on the novel classes.
# usage: [DATA=/path/to/datasets] scripts/maple/base2new_test.sh [--root DIR] DATASET SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=MaPLe
CONFIG_DIR=MaPLe  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16_c2_ep5_batch4_2ctx
ZEROSHOT=0
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base2new_test "$@"
