#!/bin/bash
# CLIP-LoRA, cross-dataset: evaluate the ImageNet model on DATASET (all: the other 10).
# usage: [DATA=/path/to/datasets] scripts/cliplora/xd_test.sh [--root DIR] DATASET|all SEED [CFG]
# (the configs, environment variables and output layout: python -m tools.protocol --help)
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh" xd_test cliplora "$@"
