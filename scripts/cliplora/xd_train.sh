#!/bin/bash
# CLIP-LoRA, cross-dataset: train on ImageNet, all classes, SHOTS (16) per class.
# usage: [DATA=/path/to/datasets] scripts/cliplora/xd_train.sh [--root DIR] SEED [CFG]
# (the configs, environment variables and output layout: python -m tools.protocol --help)
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh" xd_train cliplora "$@"
