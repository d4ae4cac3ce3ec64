"""TensorFlow's set-up for a training job: its threads and GPUs, the seed and op
determinism, the dtype policy and the batch normalisation that is trained."""

from __future__ import annotations

import logging
import os

from tumorseg.gpus import claim_gpu, grow_gpu_memory
from tumorseg.threads import hold_tensorflow
from tumorseg.training.precision import training_policy

log = logging.getLogger("tumorseg.train")  # one logger for every part of the training job


def configure_tensorflow(threads: int) -> list:
    """Take a GPU slot on a machine with several (:func:`tumorseg.gpus.claim_gpu`), set
    TF's thread pools (if TF has not started yet) and GPU memory growth.

    Returns the visible GPUs (``CUDA_VISIBLE_DEVICES`` is honoured by TensorFlow itself).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    claim_gpu()
    hold_tensorflow(threads, inter_op=min(threads, 2))
    import tensorflow as tf

    gpus = grow_gpu_memory()
    log.info(
        "devices: %s (CUDA_VISIBLE_DEVICES=%s); %d CPU threads",
        ", ".join(d.name for d in tf.config.list_physical_devices()) or "none",
        os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
        threads,
    )
    return gpus


def start_tensorflow(threads: int, seed: int, deterministic: bool) -> list:
    """Configure TensorFlow (:func:`configure_tensorflow`), seed it and, with
    ``deterministic``, switch on its op determinism; returns the visible GPUs."""
    gpus = configure_tensorflow(threads)
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
        log.info("TensorFlow op determinism on (seed %d)", seed)
    return gpus


def precision(settings: dict, gpus: list, deterministic: bool) -> tuple[str | None, bool]:
    """The dtype policy (:func:`tumorseg.training.precision.training_policy`) and fused batch
    normalisation (:func:`tumorseg.training.fused_norm.use_fused`) of a training job; both
    logged."""
    from tumorseg.training.fused_norm import use_fused

    policy = training_policy(bool(settings.get("mixed_precision")), len(gpus))
    fused = use_fused(len(gpus), deterministic)
    log.info(
        "batch normalisation in training: %s",
        "TensorFlow's fused kernel" if fused else "Keras's layer (op determinism on a GPU)",
    )
    return policy, fused


def hardware(gpus: list, threads: int) -> str:
    """The machine a job ran on, in one line: CPU model, its widest vector instructions
    (and oneDNN's cap, where ``ONEDNN_MAX_CPU_ISA`` sets one), the job's threads, and the
    GPUs it saw (for the model card)."""
    import platform

    from tumorseg.training.precision import cpu_info

    model, flags = cpu_info()
    isa = next((f for f in ("avx512_bf16", "avx512f", "avx2", "neon") if f in flags), "")
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip()
    notes = ", ".join(n for n in (isa, cap and f"ONEDNN_MAX_CPU_ISA={cap}") if n)
    text = f"{model or platform.processor() or platform.machine()}"
    text += f"{f' ({notes})' if notes else ''}, {threads} threads"
    if gpus:
        text += ", GPUs: " + ", ".join(_gpu_name(g) for g in gpus)
    return text


def _gpu_name(gpu) -> str:
    """A GPU's model name as TensorFlow reports it, else its device name."""
    import tensorflow as tf

    try:
        return tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
    except (ValueError, TypeError):  # not a physical device TensorFlow knows
        return str(getattr(gpu, "name", gpu))
