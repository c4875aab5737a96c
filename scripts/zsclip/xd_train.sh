#!/bin/bash
# Zero-shot CLIP, cross-dataset: evaluate on ImageNet (nothing is trained).
# usage: [DATA=/path/to/datasets] scripts/zsclip/xd_train.sh [--root DIR] SEED [CFG]
# (the configs, environment variables and output layout: python -m tools.protocol --help)
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh" xd_train zsclip "$@"
