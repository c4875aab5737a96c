#!/bin/bash
# ZeroshotCLIP, base-to-novel: evaluate on the base classes.
# usage: [DATA=/path/to/datasets] scripts/zsclip/base2new_train.sh [--root DIR] DATASET SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=ZeroshotCLIP
CONFIG_DIR=CoOp  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16
ZEROSHOT=1
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base2new_train "$@"
