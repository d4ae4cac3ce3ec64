"""The numeric precision a training job computes in (config ``mixed_precision``).

``mixed_precision: true`` asks for mixed precision where the hardware computes the narrow
type natively; the weights, the loss, the softmax and the batch statistics stay float32:

- on a GPU: ``mixed_float16`` (with loss scaling);
- on a CPU that has bfloat16 instructions (x86 ``avx512_bf16`` or ``amx_bf16``, read from
  ``/proc/cpuinfo``): ``mixed_bfloat16``, which oneDNN's convolutions run natively (no loss
  scaling: bfloat16 has float32's exponent range);
- otherwise float32: bfloat16 without those instructions is emulated and slower than
  float32. ``ONEDNN_MAX_CPU_ISA`` below ``AVX512_CORE_BF16`` (``AVX2``: an AVX-512 machine
  computing as an AVX2 one) keeps oneDNN from those instructions, so it counts as none.

The saved model is float32 either way, so prediction does not depend on the choice.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: oneDNN's ``ONEDNN_MAX_CPU_ISA`` values that keep it from bfloat16 instructions
NO_BF16_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
)


def cpu_bf16_flags(cpuinfo: str | Path = "/proc/cpuinfo", environ=None) -> list[str]:
    """The :data:`BF16_FLAGS` this CPU has and oneDNN may use (empty where ``cpuinfo``
    cannot be read, as on macOS and Windows, or where ``ONEDNN_MAX_CPU_ISA`` is one of
    :data:`NO_BF16_ISAS`)."""
    environ = os.environ if environ is None else environ
    if environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper() in NO_BF16_ISAS:
        return []
    flags = cpu_info(cpuinfo)[1]
    return [f for f in BF16_FLAGS if f in flags]


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, set[str]]:
    """The first CPU's model name and flags in ``cpuinfo`` (``""`` and none where it
    cannot be read, as on macOS and Windows)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return "", set()
    model, flags = "", None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break
    return model, flags or set()


def training_policy(asked: bool, gpus: int, cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The Keras dtype policy of a training job: ``"mixed_float16"``, ``"mixed_bfloat16"``
    or None (float32); ``asked``: the model's ``mixed_precision``; ``gpus``: visible GPUs.
    Logs the choice and why."""
    if not asked:
        return None
    if gpus:
        log.info("precision: mixed float16 on the GPU (mixed_precision: true)")
        return "mixed_float16"
    flags = cpu_bf16_flags(cpuinfo)
    if flags:
        log.info(
            "precision: mixed bfloat16 on the CPU (mixed_precision: true; the CPU has %s)",
            ", ".join(flags),
        )
        return "mixed_bfloat16"
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    log.info(
        "precision: float32 (mixed_precision: true, but no GPU is visible and %s)",
        f"ONEDNN_MAX_CPU_ISA={isa} keeps oneDNN from bfloat16 instructions"
        if isa and isa.strip().upper() in NO_BF16_ISAS
        else f"the CPU has none of {', '.join(BF16_FLAGS)}",
    )
    return None


def policy_name(policy: str | None) -> str:
    """How a policy reads in a model summary."""
    return {"mixed_float16": "float16 (mixed)", "mixed_bfloat16": "bfloat16 (mixed)"}.get(
        policy, "float32"
    )
