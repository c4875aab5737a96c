#!/bin/bash
# MaPLe, cross-dataset and domain generalization: train on ImageNet, all classes, 16 shots.
# usage: [DATA=/path/to/datasets] scripts/maple/xd_train.sh [--root DIR] SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=MaPLe
CONFIG_DIR=MaPLe  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16_c2_ep5_batch4_2ctx_cross_datasets
ZEROSHOT=0
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_train "$@"
