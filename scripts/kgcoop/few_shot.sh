#!/bin/bash
# KgCoOp, few-shot: train on all classes with SHOTS per class; the log's final test is the result.
# usage: [DATA=/path/to/datasets] scripts/kgcoop/few_shot.sh [--root DIR] DATASET SHOTS SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=KgCoOp
CONFIG_DIR=KgCoOp  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16_ep100_ctxv1
ZEROSHOT=0
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
few_shot "$@"
