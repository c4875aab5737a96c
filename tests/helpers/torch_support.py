"""What the installed torch can do, for tests that reach the CUDA precision paths on CPU, and
which machine a golden file's bits belong to.

    python -m tests.helpers.torch_support    # this machine's fingerprint, as goldens record it
"""
import functools
import json
import platform
import re

import torch

# CPU flags of the vector instruction sets that torch, MKL and oneDNN pick their kernels by
# (x86: sse*, avx*, fma, f16c, amx*; Arm: asimd*, sve*, fphp, bf16, i8mm). Two CPUs with the
# same model string can differ here: a cloud VM reports "Intel(R) Xeon(R) Processor" for
# several generations, and with avx512_fp16 oneDNN runs fp16 matrix products in another
# order (our fp16 goldens then differ by up to 8 fp16 ulps in the logits).
_ISA_FLAG = re.compile(r"^(sse|ssse|avx|fma|f16c|amx|asimd|sve|fphp|bf16|i8mm)")


def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def _cpuinfo_field(text, *keys):
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys and value.strip():
            return value.strip()
    return ""


@functools.lru_cache(maxsize=None)
def machine_fingerprint():
    """What a golden value's bits depend on besides our code: the CPU (its model string and
    the vector instruction sets it has) and the torch version. A golden file records it as
    ``machine``; a bitwise comparison with the file is claimed only where it matches."""
    info = _cpuinfo()
    cpu = _cpuinfo_field(info, "model name", "Model", "Hardware", "cpu model") \
        or platform.processor() or platform.machine()
    flags = _cpuinfo_field(info, "flags", "Features").split()
    isa = sorted(f for f in flags if _ISA_FLAG.match(f))
    return {"cpu": cpu, "isa": " ".join(isa) or f"{platform.machine()} (flags unknown)",
            "torch": torch.__version__.split("+")[0]}


def recorded_here(golden):
    """Whether ``golden`` (a golden file's dict) was recorded on this machine with this torch:
    only then do its bits have to be ours. A file without a ``machine`` field was recorded
    before files said where: somewhere else, as far as anyone can tell."""
    return golden.get("machine") == machine_fingerprint()


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


if __name__ == "__main__":
    print(json.dumps(machine_fingerprint(), indent=1))
