#!/bin/bash
# ZeroshotCLIP, cross-dataset: evaluate on ImageNet (the source).
# usage: [DATA=/path/to/datasets] scripts/zsclip/xd_train.sh [--root DIR] SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=ZeroshotCLIP
CONFIG_DIR=CoOp  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16
ZEROSHOT=1
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_train "$@"
