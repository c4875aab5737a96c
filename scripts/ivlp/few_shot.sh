#!/bin/bash
# IVLP, few-shot: train on all classes with SHOTS per class; the log's final test is the result.
# usage: [DATA=/path/to/datasets] scripts/ivlp/few_shot.sh [--root DIR] DATASET SHOTS SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=IVLP
CONFIG_DIR=IVLP  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16_c2_ep5_batch4_2+2ctx
ZEROSHOT=0
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
few_shot "$@"
