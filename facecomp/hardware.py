"""What this machine computes fast: bfloat16 on the CPU, or not.

CPUs with AVX-512 BF16 or AMX run bfloat16 convolutions two to three times as fast as float32;
elsewhere (AVX2) torch emulates bfloat16, several times slower than float32 (7x for the decoder,
14x for a training step, on an AVX2 EPYC). Decoding previews and training on the CPU ask here.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def cpu_has_bfloat16() -> bool:
    """Whether the CPU has bfloat16 instructions (Linux's /proc/cpuinfo: avx512_bf16 or amx_bf16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no way to ask, and float32 is never slow
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
