#!/bin/bash
# CLIP-LoRA, few-shot: train on all classes with SHOTS per class; the log's final test is the result.
# usage: [DATA=/path/to/datasets] scripts/cliplora/few_shot.sh [--root DIR] DATASET SHOTS SEED [CFG]
# (the configs, environment variables and output layout: python -m tools.protocol --help)
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh" few_shot cliplora "$@"
