#!/bin/bash
# IVLP, base-to-novel: evaluate the last epoch on the novel classes.
# usage: [DATA=/path/to/datasets] scripts/ivlp/base2new_test.sh [--root DIR] DATASET SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=IVLP
CONFIG_DIR=IVLP  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16_c2_ep5_batch4_2+2ctx
ZEROSHOT=0
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base2new_test "$@"
