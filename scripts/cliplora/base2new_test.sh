#!/bin/bash
# CLIP-LoRA, base-to-novel: evaluate the training's last epoch on the novel classes.
# usage: [DATA=/path/to/datasets] scripts/cliplora/base2new_test.sh [--root DIR] DATASET SEED [CFG]
# (the configs, environment variables and output layout: python -m tools.protocol --help)
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh" base2new_test cliplora "$@"
