"""The arithmetic the network runs in: fp32, or bfloat16 autocast where the processor computes it natively.

`auto` picks bf16 on a CPU that reports AVX512-BF16 or AMX-BF16 (oneDNN then runs ResNet50's convolutions in
bfloat16 at about twice fp32's speed) and on a CUDA device that supports bf16; fp32 everywhere else, since on a
CPU without native bf16 the conversions make it slower than fp32. Under bf16 only the operations autocast lists
(convolutions, the head's matmul) run in bfloat16; the weights, their gradients and the optimiser state, BatchNorm's
running statistics, the loss, the temperature fit, the guard and every metric stay fp32.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pneumocam.core.errors import SettingError

PRECISIONS = ("auto", "fp32", "bf16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# What `auto` resolves to when set (fp32 or bf16): for bit-reproducible runs on a bf16 machine, and the test suite.
AUTO_ENV = "PNEUMOCAM_AUTO_PRECISION"


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The processor's feature flags (Linux /proc/cpuinfo; empty elsewhere, which means fp32 under auto)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    return any(flag in cpu_flags() for flag in CPU_BF16_FLAGS)


@dataclass(frozen=True)
class Precision:
    requested: str  # auto | fp32 | bf16
    used: str  # fp32 | bf16
    reason: str

    @property
    def bf16(self) -> bool:
        return self.used == "bf16"

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_precision(requested: str, device: torch.device | str) -> Precision:
    """What `requested` means on this device, with the reason (for the log, config.json, model.pt, the report)."""
    if requested not in PRECISIONS:
        raise SettingError("precision", f"must be one of {', '.join(PRECISIONS)}, got '{requested}'")
    kind = torch.device(device).type
    if kind == "cuda":
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        why = "this CUDA device supports bfloat16" if native else "this CUDA device has no bfloat16"
    else:
        native = cpu_has_native_bf16()
        found = [f for f in CPU_BF16_FLAGS if f in cpu_flags()]
        why = f"the CPU reports {', '.join(found)}" if native else "the CPU reports neither AVX512-BF16 nor AMX-BF16"
    if requested == "fp32":
        return Precision(requested, "fp32", "asked for")
    if requested == "bf16":
        return Precision(requested, "bf16", "asked for" + ("" if native else f" ({why}: expect it to be slower)"))
    forced = os.environ.get(AUTO_ENV, "").strip()
    if forced:
        if forced not in ("fp32", "bf16"):
            raise SettingError("precision", f"auto: {AUTO_ENV} must be fp32 or bf16, got '{forced}'")
        return Precision(requested, forced, f"{AUTO_ENV}={forced}")
    return Precision(requested, "bf16" if native else "fp32", why)


def autocast(precision: Precision | None, device: torch.device | str):
    """bf16 autocast for the forward passes under a bf16 precision; a no-op otherwise."""
    if precision is None or not precision.bf16:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
