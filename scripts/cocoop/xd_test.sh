#!/bin/bash
# CoCoOp, cross-dataset: evaluate the ImageNet model on DATASET (all: the other 10).
# usage: [DATA=/path/to/datasets] scripts/cocoop/xd_test.sh [--root DIR] DATASET|all SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=CoCoOp
CONFIG_DIR=CoCoOp  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16_c4_ep10_batch1_ctxv1
ZEROSHOT=0
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
