#!/bin/bash
# IVLP, domain generalization: evaluate the ImageNet model on an ImageNet variant (all: the 4).
# usage: [DATA=/path/to/datasets] scripts/ivlp/dg_test.sh [--root DIR] DATASET|all SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=IVLP
CONFIG_DIR=IVLP  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16_c2_ep5_batch4_2+2ctx
ZEROSHOT=0
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
dg_test "$@"
