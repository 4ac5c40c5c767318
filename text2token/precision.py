"""Numeric precision of training, encoding and evaluation: ``auto``, ``fp32`` or ``bf16``.

``auto`` turns on bf16 autocast where the hardware runs it fast (a CUDA device with bf16, or a CPU
with AVX512-BF16 or AMX), else fp32; ``$TEXT2TOKEN_PRECISION`` (fp32 or bf16), where set, is what
``auto`` means instead (the test suite sets fp32, so its numbers do not depend on the CPU). Weights stay as loaded; autocast runs the matmuls in bf16 and
:func:`text2token.model.vocab_logits` keeps the vocabulary projection in fp32.
"""

from __future__ import annotations

import os
from functools import lru_cache

PRECISIONS = ("auto", "fp32", "bf16")
ENV_VAR = "TEXT2TOKEN_PRECISION"
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions (Linux: the flags of /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return any(flag in flags for flag in _CPU_BF16_FLAGS)
    except OSError:
        pass
    return False


def default_device_type() -> str:
    """The device type this process trains or encodes on: ``cuda`` where a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_has_fast_bf16(device_type: str) -> bool:
    import torch

    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device_type == "cpu":
        return cpu_has_fast_bf16()
    return False


def resolve(precision: str | None, device_type: str | None = None) -> str:
    """``fp32`` or ``bf16`` for ``precision`` (``None`` means ``auto``) on ``device_type`` (default: the
    device this process trains or encodes on)."""
    precision = precision or "auto"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    forced = os.environ.get(ENV_VAR)
    if forced:
        if forced not in ("fp32", "bf16"):
            raise ValueError(f"${ENV_VAR} must be fp32 or bf16, got {forced!r}")
        return forced
    return "bf16" if device_has_fast_bf16(device_type or default_device_type()) else "fp32"


def describe(resolved: str, requested: str | None) -> str:
    """One line for the console: what runs, and why."""
    requested = requested or "auto"
    if requested == "auto" and os.environ.get(ENV_VAR):
        return f"precision: {resolved} (auto: ${ENV_VAR})"
    if requested == "auto":
        why = "this hardware runs bf16 fast" if resolved == "bf16" else "no fast bf16 on this hardware"
        return f"precision: {resolved} (auto: {why}; --precision fp32|bf16 to force)"
    return f"precision: {resolved}"
