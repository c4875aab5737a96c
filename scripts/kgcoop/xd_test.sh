#!/bin/bash
# KgCoOp, cross-dataset: evaluate the ImageNet model on DATASET (all: the other 10).
# usage: [DATA=/path/to/datasets] scripts/kgcoop/xd_test.sh [--root DIR] DATASET|all SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=KgCoOp
CONFIG_DIR=KgCoOp  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16_ep100_ctxv1
ZEROSHOT=0
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
