"""What the installed torch can do, for tests that reach the CUDA precision paths on CPU."""
import functools

import torch

def same_torch_as_recorded(recorded):
    """Whether this torch is ``recorded``, the one a golden file was recorded with: bit for
    bit holds on it; another torch's CPU kernels may round differently."""
    return torch.__version__.split("+")[0] == recorded.split("+")[0]


@functools.lru_cache(maxsize=None)
def cpu_fp16_training():
    """Whether this torch trains in fp16 on CPU: cross-entropy on half logits (torch 2.3 has
    no CPU kernel for it; CUDA has, so only the PREC_ON_CPU emulation is affected)."""
    try:
        logits = torch.zeros(2, 3, dtype=torch.float16, requires_grad=True)
        torch.nn.functional.cross_entropy(logits, torch.zeros(2, dtype=torch.long)).backward()
        return True
    except RuntimeError:
        return False


NO_CPU_FP16 = (f"torch {torch.__version__} has no CPU kernel for fp16 cross-entropy; the "
               f"fp16/amp paths are reached on CPU only by emulation (PREC_ON_CPU=1), and CUDA "
               f"runs are not affected")
