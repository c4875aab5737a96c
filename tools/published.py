"""Published numbers the results tool prints beside ours (CLIP ViT-B/16, 16 shots unless a
table says otherwise), each with where it was read.

A number is here only if it was read in a source named beside it. A cell that no source we
could read gives is ``None`` and prints empty: nothing is filled in from memory or from
another paper's re-run of a method. To add numbers (e.g. from the papers' PDFs), fill the
cells and name the table they come from.

Per-dataset cells follow tools/protocol.py's dataset lists (XD_TARGETS, DG_TARGETS), in
their order, so that the dataset names are written in one place only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

Value = Optional[float]

# ---------------------------------------------------------------------------------------
# Base-to-novel: (base, novel, HM), averages over the 11 datasets

#: Sources: CLIP, CoOp, CoCoOp, MaPLe, PromptSRC: the PromptSRC repository's README.md
#: (muzairkhattak/PromptSRC, "PromptSRC in comparison with existing state-of-the-art"; CoOp and
#: CLIP as the CoCoOp paper reports them). KgCoOp: htyao89/KgCoOp, readme.md. The Proxy-FDA
#: rows: the Proxy-FDA paper (arXiv 2505.24088), Table 2, as secondary sources quote it (its
#: full text and code could not be read); MaPLe + Proxy-FDA's HM 79.84 is the project
#: specification's and was not found in a source we could read. ProGrad: htyao89/KgCoOp,
#: readme.md (KgCoOp's authors' ViT-B/16 run of ProGrad; ProGrad's own repository and README
#: report RN50 only). TCP: the TCP paper (CVPR 2024) as zhengli97/Awesome-Prompt-Adapter-
#: Learning-for-VLMs, README.md, "Table 1. Average results on 11 datasets" prints it (TCP's
#: README has no table, and its paper's table could not be read here).
#: MMA: ZjjConan/Multi-Modal-Adapter, README.md, "Base-to-Novel Generalization Results".
#: IVLP: muzairkhattak/PromptSRC, README.md, "Effectiveness of PromptSRC in comparison with
#: baseline Independent V-L Prompting" (its 4+4-token, 20-epoch config,
#: IVLP/vit_b16_c2_ep20_batch4_4+4ctx; our IVLP default is the MaPLe paper's 2+2, 5 epochs).
#: CLIP-LoRA: none; its paper (arXiv 2405.18541) and repository (MaxZanella/CLIP-LoRA, README)
#: report few-shot accuracy only, and that as a figure (few_shot.png) or in the PDF's tables.
BASE2NEW: Dict[str, Tuple[Value, Value, Value]] = {
    "CLIP": (69.34, 74.22, 71.70),
    "CoOp": (82.69, 63.22, 71.66),
    "CoCoOp": (80.47, 71.69, 75.83),
    "KgCoOp": (80.73, 73.60, 77.00),
    "MaPLe": (82.28, 75.14, 78.55),
    "PromptSRC": (84.26, 76.10, 79.97),
    "IVLP": (84.21, 71.79, 77.51),
    "ProGrad": (82.48, 70.75, 76.16),
    "TCP": (84.13, 75.36, 79.51),
    "CoOp + Proxy-FDA": (83.16, 73.67, 78.13),
    "MaPLe + Proxy-FDA": (None, None, 79.84),
    "PromptSRC + Proxy-FDA": (84.47, 77.45, 80.81),
    "MMA": (83.20, 76.80, 79.87),
    # Koorye/DePT README.md, "Base-to-New Generalization" (examples/base_to_new_performance.png,
    # "Avg over 11 datasets"; DePT's own re-runs of the base methods sit beside them there)
    "CoOp + DePT": (83.66, 71.82, 77.29),
    "CoCoOp + DePT": (83.80, 72.89, 77.97),
    "KgCoOp + DePT": (83.62, 75.04, 79.10),
    "MaPLe + DePT": (84.85, 74.82, 79.52),
}
#: rows that belong to one config of their method only (another config of it gets none)
BASE2NEW_CONFIG = {"IVLP": "vit_b16_c2_ep20_batch4_4+4ctx"}


# ---------------------------------------------------------------------------------------
# Cross-dataset and domain generalization: ImageNet-trained (16 shots, all classes) models


@dataclass(frozen=True)
class Transfer:
    """One method's row: the source (ImageNet) accuracy, each target's (in the protocol's
    target order; empty: none recorded) and the average over the targets."""
    source: Value = None
    targets: Tuple[Value, ...] = ()
    average: Value = None
    where: str = ""


_PROTEXT = ("muzairkhattak/ProText, README.md, \"ProText performs favourably well in "
            "Cross-dataset benchmark\" (average accuracy over the 10 targets)")

#: Cross-dataset: only the 10-target averages were found in a readable source (the ProText
#: README, by the MaPLe and PromptSRC authors, quoting the papers). The per-dataset and
#: source cells of the MaPLe/PromptSRC/KgCoOp papers' tables were not found in any
#: repository or document we could read, so they are empty, as is KgCoOp's row.
_DEPT_XD = ("Koorye/DePT, README.md, \"Cross-Dataset Generalization\" "
            "(examples/cross_dataset_performance.png)")
_DEPT_DG = ("Koorye/DePT, additional_results/domain_generalization.md "
            "(examples/domain_generalization_performance.png)")

XD: Dict[str, Transfer] = {
    "CoOp": Transfer(average=63.88, where=_PROTEXT),
    "CoCoOp": Transfer(average=65.74, where=_PROTEXT),
    "MaPLe": Transfer(average=66.30, where=_PROTEXT),
    "PromptSRC": Transfer(average=65.81, where=_PROTEXT),
    "CoOp + DePT": Transfer(72.63, (93.30, 90.00, 65.53, 70.50, 85.97, 21.90, 66.07, 43.17,
                                    44.97, 68.80), 65.02, _DEPT_XD),
    "CoCoOp + DePT": Transfer(72.77, (94.10, 90.63, 66.23, 72.17, 86.27, 22.90, 67.30, 45.50,
                                      44.17, 69.53), 65.88, _DEPT_XD),
    "KgCoOp + DePT": Transfer(72.77, (94.23, 90.03, 65.57, 70.57, 86.37, 23.27, 66.67, 45.97,
                                      43.53, 69.30), 65.55, _DEPT_XD),
    "MaPLe + DePT": Transfer(73.27, (92.53, 90.10, 64.60, 70.10, 85.57, 23.63, 66.40, 45.03,
                                     40.13, 67.53), 64.56, _DEPT_XD),
}

#: Domain generalization: only DePT's table was found in a readable source (the peers' READMEs
#: and docs give base-to-novel tables only; their DG tables are in the papers' PDFs). DePT's
#: table has no average over the targets, so none is given. Its targets are in DG_TARGETS order
#: (V2, Sketch, A, R; the table prints R before A). Its ImageNet column differs from its
#: cross-dataset table's (70.70 vs 72.63 for CoOp + DePT): as printed.
DG: Dict[str, Transfer] = {
    "CoOp + DePT": Transfer(70.70, (64.13, 49.40, 51.57, 77.33), None, _DEPT_DG),
    "CoCoOp + DePT": Transfer(70.57, (63.97, 49.83, 50.90, 76.87), None, _DEPT_DG),
    "KgCoOp + DePT": Transfer(70.63, (63.70, 48.90, 50.77, 76.57), None, _DEPT_DG),
    "MaPLe + DePT": Transfer(70.97, (64.33, 49.33, 49.70, 77.37), None, _DEPT_DG),
}


# ---------------------------------------------------------------------------------------
# Few-shot: per-shots averages over the 11 datasets


@dataclass(frozen=True)
class FewShot:
    """Accuracy averaged over the 11 datasets, per shots (tools/protocol.py FEW_SHOT_SHOTS)."""
    by_shots: Dict[int, Value] = field(default_factory=dict)
    where: str = ""


#: None found in a readable source (PromptSRC's few-shot table, with CLIP linear probe, CoOp,
#: CoCoOp, MaPLe and PromptSRC, is in its paper's PDF only).
#: CLIP-LoRA's per-shots averages are plotted in its README (few_shot.png, no values) and
#: tabulated in its paper's PDF, which we could not read.
FEW_SHOT: Dict[str, FewShot] = {}
