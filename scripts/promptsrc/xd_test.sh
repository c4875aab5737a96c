#!/bin/bash
# PromptSRC, cross-dataset: evaluate the ImageNet model on DATASET (all: the other 10).
# usage: [DATA=/path/to/datasets] scripts/promptsrc/xd_test.sh [--root DIR] DATASET|all SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=PromptSRC
CONFIG_DIR=PromptSRC  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets
ZEROSHOT=0
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
xd_test "$@"
