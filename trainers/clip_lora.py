"""CLIP-LoRA (Zanella & Ben Ayed, CVPRW 2024; MaxZanella/CLIP-LoRA, lora.py and loralib):
low-rank updates s B A (s = ALPHA / sqrt(R)) of attention projections in both towers, on
dropout(x) in training, merged into W in evaluation, through the towers' ``adapter`` argument
(the towers, and every frozen feature, stay pre-trained CLIP). As the reference: fp32 factors,
the loss scaled in fp16, logit scale 100, AdamW with a cosine per iteration, the class text
TEMPLATE. An epoch is N_ITERS iterations: the reference's n_iters x shots is MAX_EPOCH = shots.
"""
import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip_backbone.templates import clean_classname
from errors import ConfigError
from regularizers.config import ensure

from .base import IterationEpochs, PromptTrainer
from .models import PromptCLIP
from .registry import register_trainer

TOWERS = {"both": ("text", "image"), "text": ("text",), "vision": ("image",)}
PARAMS = ("q", "k", "v", "o")  # o: the attention's output projection
POSITIONS = {  # blocks by depth d: loralib's tables for 12 (bottom 0-3, ...) and 24 blocks
    "all": lambda d: range(d), "bottom": lambda d: range(round(d / 3)),
    "mid": lambda d: range(round(d / 3), round(2 * d / 3)),
    "up": lambda d: range(round(2 * d / 3), d), "half-bottom": lambda d: range(d // 2),
    "half-up": lambda d: range(d // 2, d), "top3": lambda d: range(max(d - 3, 0), d)}


def add_cliplora_config(cfg):
    """cfg.TRAINER.CLIPLORA: the reference's arguments (run_utils.py), names and defaults."""
    c = ensure(cfg.TRAINER, "CLIPLORA", type(cfg)())
    ensure(c, "ENCODER", "both")  # towers adapted: text, vision or both
    ensure(c, "POSITION", "all")  # blocks adapted, one of POSITIONS
    ensure(c, "PARAMS", ["q", "k", "v"])  # projections adapted: any of q, k, v, o
    ensure(c, "R", 2)  # rank of the low-rank matrices
    ensure(c, "ALPHA", 1)  # scaling alpha / sqrt(r)
    ensure(c, "DROPOUT_RATE", 0.25)  # dropout on the input of each low-rank branch
    ensure(c, "N_ITERS", 500)  # iterations per epoch (the reference's n_iters, per shot)
    ensure(c, "TEMPLATE", "a photo of a {}.")  # the class text (the reference's, every dataset)
    ensure(c, "PREC", "fp16")  # fp16 (the reference's: autocast, GradScaler), fp32 or amp


def lora_factors(width, rank):  # loralib's names, shapes and init (A as nn.Linear's, B zero)
    a = nn.Parameter(nn.init.kaiming_uniform_(torch.empty(rank, width), a=math.sqrt(5)))
    return nn.ParameterDict({"w_lora_A": a, "w_lora_B": nn.Parameter(torch.zeros(width, rank))})


class LoRA(nn.Module):
    """The factors of every adapted projection: ``layers[tower][block][q|k|v|o]``."""

    def __init__(self, node, backbone):
        super().__init__()
        self.scaling, self.dropout_rate = node.ALPHA / math.sqrt(node.R), node.DROPOUT_RATE
        self.layers = nn.ModuleDict()
        for tower in TOWERS[node.ENCODER]:
            encoder = getattr(backbone, tower)
            blocks = POSITIONS[node.POSITION](encoder.num_layers)
            if encoder.width is None or not blocks:  # not a ViT (RN50: no blocks)
                raise ConfigError(f"TRAINER.CLIPLORA.POSITION {node.POSITION} selects no "
                                  f"attention block of the {tower} tower (a ViT's).")
            self.layers[tower] = nn.ModuleDict({str(i): nn.ModuleDict(
                {p: lora_factors(encoder.width, node.R) for p in node.PARAMS}) for i in blocks})

    def adapter(self, tower):
        """The tower's ``adapter`` (``clip_backbone.encoders``); None where none is adapted."""
        layers = self.layers[tower] if tower in self.layers else {}
        depth = {block: i for i, block in enumerate(layers)}  # PACE counts the adapted blocks

        def adapt(block, noise):
            block = str(block)
            return functools.partial(self.project, layers[block], depth[block], noise) \
                if block in layers else None
        return adapt if layers else None

    def project(self, factors, depth, noise, name, x, weight, bias):
        if name not in factors:
            return F.linear(x, weight, bias)
        b, a = factors[name]["w_lora_B"], factors[name]["w_lora_A"]
        if not self.training:  # loralib's merge, in fp32
            return F.linear(x, (weight.float() + (b @ a) * self.scaling).to(weight.dtype), bias)
        # the reference's order (it sets the order of the backward's sums), casts as autocast's
        out, x = F.linear(x, weight, bias), F.dropout(x, self.dropout_rate, True)
        delta = torch.matmul(x, (b.to(x.dtype) @ a.to(x.dtype)).t()) * self.scaling
        if noise is not None:  # PACE: on the branch output, per sample and channel
            delta = noise(delta.permute(1, 0, 2), depth, x.shape[1]).permute(1, 0, 2)
        return out + delta


class LoRACLIP(PromptCLIP):
    def __init__(self, backbone, node, classnames):
        super().__init__(backbone, LoRA(node, backbone))
        tokens = backbone.tokenize([node.TEMPLATE.format(clean_classname(c)) for c in classnames])
        self.register_buffer("tokens", tokens, persistent=False)

    def encode_text_features(self, hooks=None):
        return self.backbone.text(self.backbone.embed(self.tokens), self.tokens, hooks=hooks,
                                  adapter=self.prompt_learner.adapter("text"))

    def encode_image_features(self, images, hooks=None):
        return self.backbone.image(images, hooks=hooks,
                                   adapter=self.prompt_learner.adapter("image"))

    def normalized_logits(self, image, text):
        return 100 * self.backbone.cast(image) @ self.backbone.cast(text).t()  # main.py's scale


@register_trainer(add_config=add_cliplora_config)
class CLIPLoRA(PromptTrainer):
    METHOD_NODE = "CLIPLORA"
    CHECKPOINT_NAME = "lora_weights"
    LR_STEP = "batch"
    LOSS_SCALING = ("fp16", "amp")

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        c = cfg.TRAINER.CLIPLORA
        if c.ENCODER not in TOWERS or c.POSITION not in POSITIONS or not c.PARAMS \
                or not set(c.PARAMS) <= set(PARAMS) or min(c.R, c.N_ITERS) < 1 \
                or not 0 <= c.DROPOUT_RATE < 1 or "{}" not in c.TEMPLATE:
            raise ConfigError(
                f"TRAINER.CLIPLORA: ENCODER one of {', '.join(TOWERS)}, POSITION one of "
                f"{', '.join(POSITIONS)}, PARAMS of q, k, v, o, R, N_ITERS >= 1, DROPOUT_RATE in "
                f"[0, 1), TEMPLATE with {{}}; got {c.ENCODER}, {c.POSITION}, {list(c.PARAMS)}, "
                f"{c.R}, {c.N_ITERS}, {c.DROPOUT_RATE}, {c.TEMPLATE!r}.")

    def prompted_towers(self):
        return TOWERS[self.method_cfg.ENCODER]

    def prompt_depth(self):
        return max(len(blocks) for blocks in self.model.prompt_learner.layers.values())

    def hand_template(self):
        return self.method_cfg.TEMPLATE

    def build_scheduler(self, optim):  # lora.py: per iteration, n_iters x shots, to 1e-6
        total = self.cfg.OPTIM.MAX_EPOCH * self.method_cfg.N_ITERS
        return torch.optim.lr_scheduler.CosineAnnealingLR(optim, total, eta_min=1e-6)

    def build_custom_clip(self, cfg, classnames, backbone):
        return LoRACLIP(backbone, cfg.TRAINER.CLIPLORA, classnames)

    def build_model(self):
        super().build_model()
        self.train_loader_x = IterationEpochs(self.train_loader_x, self.method_cfg.N_ITERS)
