#!/bin/bash
# Zero-shot CLIP, few-shot: evaluate on all classes (nothing is trained).
# usage: [DATA=/path/to/datasets] scripts/zsclip/few_shot.sh [--root DIR] DATASET SHOTS SEED [CFG]
# (the configs, environment variables and output layout: python -m tools.protocol --help)
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh" few_shot zsclip "$@"
