#!/bin/bash
# CoCoOp, few-shot: train on all classes with SHOTS per class; the log's final test is the result.
# usage: [DATA=/path/to/datasets] scripts/cocoop/few_shot.sh [--root DIR] DATASET SHOTS SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=CoCoOp
CONFIG_DIR=CoCoOp  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16_c4_ep10_batch1_ctxv1
ZEROSHOT=0
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
few_shot "$@"
