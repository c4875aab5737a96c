#!/bin/bash
# Zero-shot CLIP, domain generalization: evaluate on DATASET (all: the 4 ImageNet variants).
# usage: [DATA=/path/to/datasets] scripts/zsclip/dg_test.sh [--root DIR] DATASET|all SEED [CFG]
# (the configs, environment variables and output layout: python -m tools.protocol --help)
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh" dg_test zsclip "$@"
