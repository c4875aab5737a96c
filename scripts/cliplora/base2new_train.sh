#!/bin/bash
# CLIP-LoRA, base-to-novel: train on the base classes (SHOTS per class, default 16).
# usage: [DATA=/path/to/datasets] scripts/cliplora/base2new_train.sh [--root DIR] DATASET SEED [CFG]
# (the configs, environment variables and output layout: python -m tools.protocol --help)
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh" base2new_train cliplora "$@"
