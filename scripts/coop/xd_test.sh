#!/bin/bash
# CoOp, cross-dataset: evaluate the ImageNet model on DATASET (all: the other 10).
# usage: [DATA=/path/to/datasets] scripts/coop/xd_test.sh [--root DIR] DATASET|all SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=CoOp
CONFIG_DIR=CoOp  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16_ep50_ctxv1
ZEROSHOT=0
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
