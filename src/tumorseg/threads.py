"""The one place that sets a job's thread counts: ITK's pool, TensorFlow's pools, and the
split of a batch job's threads between the model and the way back to native space.

Snakemake sets ``OMP_NUM_THREADS`` to a job's ``threads:`` (which already holds NumPy's
BLAS and OpenMP to it); ITK and TensorFlow would otherwise start one thread per core of the
machine. Stdlib only (SimpleITK is held only once something imported it, TensorFlow is
imported when its pools are set), so that :mod:`tumorseg.logs` can use it first thing.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)


def job_threads() -> int | None:
    """The job's threads as Snakemake gave them (``OMP_NUM_THREADS``); None if unknown."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) >= 1 else None


def hold_itk(threads: int | None) -> int | None:
    """Limit ITK's thread pool to ``threads`` (also for a SimpleITK imported later).
    Returns the limit applied (None: none given)."""
    if threads is None or int(threads) < 1:
        return None
    threads = int(threads)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    sitk = sys.modules.get("SimpleITK")
    if sitk is not None:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    return threads


def hold_tensorflow(threads: int, inter_op: int) -> None:
    """TensorFlow's pools: ``threads`` intra-op, ``inter_op`` inter-op (also as the
    environment of a TensorFlow not yet started, oneDNN's OpenMP included). A TensorFlow
    that already runs keeps its pools: said in the log when they differ."""
    threads, inter_op = max(1, int(threads)), max(1, int(inter_op))
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(inter_op)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:  # already initialised in this process
        current = tf.config.threading.get_intra_op_parallelism_threads()
        if current != threads:
            log.warning(
                "TensorFlow was already running; its thread pools stay at %s threads", current
            )


def split_threads(threads: int, overlap: bool | None) -> tuple[bool, int, int]:
    """(overlap, TensorFlow threads, ITK threads) of a batch job with ``threads`` cores:
    overlapping (the default from 2 threads on), the way back to native space gets one
    thread and the model the others; without, both get all of them in turn."""
    threads = max(1, int(threads))
    overlap = threads >= 2 if overlap is None else bool(overlap and threads >= 2)
    return (True, threads - 1, 1) if overlap else (False, threads, threads)
