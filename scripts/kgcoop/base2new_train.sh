#!/bin/bash
# KgCoOp, base-to-novel: train on the base classes (SHOTS per class, default 16).
# usage: [DATA=/path/to/datasets] scripts/kgcoop/base2new_train.sh [--root DIR] DATASET SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=KgCoOp
CONFIG_DIR=KgCoOp  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16_ep100_ctxv1
ZEROSHOT=0
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base2new_train "$@"
