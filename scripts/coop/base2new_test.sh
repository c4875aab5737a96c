#!/bin/bash
# CoOp, base-to-novel: evaluate the last epoch on the novel classes.
# usage: [DATA=/path/to/datasets] scripts/coop/base2new_test.sh [--root DIR] DATASET SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=CoOp
CONFIG_DIR=CoOp  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16_ctxv1
ZEROSHOT=0
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
base2new_test "$@"
