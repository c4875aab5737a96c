"""cfg.TRAINER.<NAME> nodes: every trainer key and its default, documented once.

Names and defaults follow the peer repositories (CoOp, MaPLe, PromptSRC,
KgCoOp), so their YAML configs merge unchanged.
"""
from yacs.config import CfgNode as CN


def add_trainer_config(cfg):
    # CoOp (also used by ZeroshotCLIP for PREC, as in the peers' zeroshot.sh)
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16  # number of learnable context tokens
    cfg.TRAINER.COOP.CSC = False  # class-specific context (one context per class)
    cfg.TRAINER.COOP.CTX_INIT = ""  # init words, e.g. "a photo of a" (sets N_CTX to its length)
    cfg.TRAINER.COOP.PREC = "fp16"  # fp16, fp32 or amp; always fp32 on CPU
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # end, middle or front
    # KgCoOp reuses TRAINER.COOP; its peers' YAML "CTX_INIT: True" means "a photo of a"
    cfg.TRAINER.COOP.W = 1.0  # KgCoOp: weight of 1 - mean cos(learned, hand-crafted text features)

    # CoCoOp (the meta-net is Linear(E, E//16) -> ReLU -> Linear(E//16, text width))
    cfg.TRAINER.COCOOP = CN()
    cfg.TRAINER.COCOOP.N_CTX = 16  # number of learnable context tokens
    cfg.TRAINER.COCOOP.CTX_INIT = ""  # init words, e.g. "a photo of a" (sets N_CTX to its length)
    cfg.TRAINER.COCOOP.PREC = "fp16"  # fp16, fp32 or amp; always fp32 on CPU
