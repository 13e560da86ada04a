"""What this CPU's int8 kernels compute, and how to quantize so that every CPU computes the same.

ONNX Runtime's x86 u8s8 int8 GEMMs on CPUs without VNNI (AVX2, plain AVX-512) multiply and add pairs of
products into int16 with saturation (vpmaddubsw), so full-range int8 weights give different, worse numbers
there than on VNNI/AMX CPUs or aarch64, whose dot products accumulate exactly in int32. 7-bit weights
(`reduce_range`, ONNX Runtime's own advice for such CPUs) never saturate: the same model then gives the
same numbers on every x86 and ARM CPU (measured on one MatMul, with and without reduce_range, on a VNNI
and an emulated AVX2 CPU: samples/RESULTS.md#int8).
"""

from __future__ import annotations

import os
import platform
from functools import cache

EXACT_INT8_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}


@cache
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def int8_saturates() -> bool:
    """True on an x86 CPU whose u8s8 int8 kernels saturate (no VNNI/AMX); unknown flags count as saturating.
    EDGEC_INT8_NUMERICS=saturating|exact overrides the detection (to reproduce another machine's decisions)."""
    forced = os.environ.get("EDGEC_INT8_NUMERICS", "").strip().lower()
    if forced in ("saturating", "exact"):
        return forced == "saturating"
    return is_x86() and not (cpu_flags() & EXACT_INT8_FLAGS)


def int8_numerics() -> str:
    if not is_x86():
        return f"{platform.machine()} (exact int32 accumulation)"
    return "x86 without VNNI (u8s8 sums saturate in int16)" if int8_saturates() else "x86 with VNNI (exact)"
