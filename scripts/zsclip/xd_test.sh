#!/bin/bash
# Zero-shot CLIP, cross-dataset: evaluate on DATASET (all: the other 10).
# usage: [DATA=/path/to/datasets] scripts/zsclip/xd_test.sh [--root DIR] DATASET|all SEED [CFG]
# (the configs, environment variables and output layout: python -m tools.protocol --help)
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh" xd_test zsclip "$@"
