#!/bin/bash
# ZeroshotCLIP, domain generalization: evaluate on an ImageNet variant (all: the 4).
# usage: [DATA=/path/to/datasets] scripts/zsclip/dg_test.sh [--root DIR] DATASET|all SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=ZeroshotCLIP
CONFIG_DIR=CoOp  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16
ZEROSHOT=1
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
dg_test "$@"
