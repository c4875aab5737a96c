#!/bin/bash
# IVLP, cross-dataset: evaluate the ImageNet model on DATASET (all: the other 10).
# usage: [DATA=/path/to/datasets] scripts/ivlp/xd_test.sh [--root DIR] DATASET|all SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=IVLP
CONFIG_DIR=IVLP  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16_c2_ep5_batch4_2+2ctx
ZEROSHOT=0
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
