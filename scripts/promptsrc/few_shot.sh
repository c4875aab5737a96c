#!/bin/bash
# PromptSRC, few-shot: train on all classes with SHOTS per class; the log's final test is the result.
# usage: [DATA=/path/to/datasets] scripts/promptsrc/few_shot.sh [--root DIR] DATASET SHOTS SEED [CFG]
# (see scripts/common.sh for the environment variables and the output layout)
TRAINER=PromptSRC
CONFIG_DIR=PromptSRC  # configs/trainers/$CONFIG_DIR/$CFG.yaml
DEFAULT_CFG=vit_b16_c2_ep50_batch4_4+4ctx_few_shot
ZEROSHOT=0
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
few_shot "$@"
