#!/bin/bash
# Zero-shot CLIP, base-to-novel: evaluate on the base classes (nothing is trained).
# usage: [DATA=/path/to/datasets] scripts/zsclip/base2new_train.sh [--root DIR] DATASET SEED [CFG]
# (the configs, environment variables and output layout: python -m tools.protocol --help)
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh" base2new_train zsclip "$@"
