#!/bin/bash
# CLIP-LoRA, domain generalization: evaluate the ImageNet model on DATASET (all: the 4 variants).
# usage: [DATA=/path/to/datasets] scripts/cliplora/dg_test.sh [--root DIR] DATASET|all SEED [CFG]
# (the configs, environment variables and output layout: python -m tools.protocol --help)
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh" dg_test cliplora "$@"
