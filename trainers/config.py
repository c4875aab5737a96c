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

    # MaPLe: coupled vision-language prompts (text prompts projected to the vision width)
    cfg.TRAINER.MAPLE = CN()
    cfg.TRAINER.MAPLE.N_CTX = 2  # learnable tokens per layer, in both towers
    # init words; only the first N_CTX token embeddings are learned and, as in
    # the reference, the prompt text keeps all the words ("a photo" learned, "of a" fixed)
    cfg.TRAINER.MAPLE.CTX_INIT = "a photo of a"
    cfg.TRAINER.MAPLE.PREC = "fp16"  # fp16, fp32 or amp; always fp32 on CPU
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9  # prompted layers (>= 1): the input plus blocks 1..DEPTH-1

    # IVLP: independent deep prompts in each tower (depth 0 = no prompts in that tower)
    cfg.TRAINER.IVLP = CN()
    cfg.TRAINER.IVLP.N_CTX_VISION = 2  # learnable vision tokens per layer
    cfg.TRAINER.IVLP.N_CTX_TEXT = 2  # learnable text tokens per layer
    cfg.TRAINER.IVLP.CTX_INIT = "a photo of a"  # text init words (same N_CTX rule as MaPLe)
    cfg.TRAINER.IVLP.PREC = "fp16"  # fp16, fp32 or amp; always fp32 on CPU
    cfg.TRAINER.IVLP.PROMPT_DEPTH_VISION = 9  # prompted vision layers (0 = no vision prompts)
    cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT = 9  # prompted text layers (>= 1)

    # PromptSRC: IVLP prompts + self-regularization towards the frozen CLIP + GPA
    cfg.TRAINER.PROMPTSRC = CN()
    cfg.TRAINER.PROMPTSRC.N_CTX_VISION = 4  # learnable vision tokens per layer
    cfg.TRAINER.PROMPTSRC.N_CTX_TEXT = 4  # learnable text tokens per layer
    cfg.TRAINER.PROMPTSRC.CTX_INIT = "a photo of a"  # text init words (same N_CTX rule as MaPLe)
    cfg.TRAINER.PROMPTSRC.PREC = "fp16"  # fp16, fp32 or amp; always fp32 on CPU
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = 9  # prompted vision layers
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = 9  # prompted text layers (>= 1)
    cfg.TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT = 25  # L1 between prompted and frozen text features
    cfg.TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT = 10  # L1 between prompted and frozen image features
    # Gaussian prompt aggregation: epoch e (1-based) weighs N(e; GPA_MEAN, GPA_STD), normalised
    cfg.TRAINER.PROMPTSRC.GPA_MEAN = 15
    cfg.TRAINER.PROMPTSRC.GPA_STD = 1
