#!/bin/bash
# ZeroshotCLIP, few-shot layout: evaluate on all classes.
# usage: [DATA=/path/to/datasets] scripts/zsclip/few_shot.sh [--root DIR] DATASET SHOTS SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=ZeroshotCLIP
CONFIG_DIR=CoOp  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16
ZEROSHOT=1
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
few_shot "$@"
