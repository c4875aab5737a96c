#!/bin/bash
# ZeroshotCLIP, cross-dataset: evaluate on DATASET (all: the 10 targets).
# usage: [DATA=/path/to/datasets] scripts/zsclip/xd_test.sh [--root DIR] DATASET|all SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=ZeroshotCLIP
CONFIG_DIR=CoOp  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16
ZEROSHOT=1
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
