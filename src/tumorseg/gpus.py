"""One GPU per job on a machine with several: a slot taken for the job's lifetime.

Snakemake counts ``--resources gpu=N`` but does not say which GPU a job should use, so on a
4-GPU box every TensorFlow process would take GPU 0. Before TensorFlow starts, a job that
holds ``gpu`` calls :func:`claim_gpu`: it takes the first free slot among the GPUs it may use
and exports that GPU alone as ``CUDA_VISIBLE_DEVICES``. A slot is an exclusive ``flock`` on
a file in :func:`slots_dir`, held by an open descriptor until the process ends; the kernel
releases it however the process ends (SIGKILL, a crash, a time limit), so a killed job
never leaves a slot taken.

The GPUs a job may use: the entries of a ``CUDA_VISIBLE_DEVICES`` set before the run (the
user's choice), else those the NVIDIA driver lists. A job that a scheduler started with its
own GPUs (SLURM sets ``CUDA_VISIBLE_DEVICES`` per job) keeps them: nothing is claimed. Stdlib
only, so that it runs before TensorFlow is imported.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

#: environment variable naming the folder of the slot files (default: under the temp dir)
SLOTS_DIR_VAR = "TUMORSEG_GPU_SLOTS"
#: the driver's list of GPUs on Linux, one folder per GPU
DRIVER_GPUS = Path("/proc/driver/nvidia/gpus")
#: scheduler variables that say a job was given its own GPUs
SCHEDULER_VARS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID")

_HELD: list[int] = []  # the descriptor of the slot this process holds


def slots_dir() -> Path:
    """The folder of the slot files: ``$TUMORSEG_GPU_SLOTS``, else one per user under the
    temp dir, so that two runs on one machine share the slots."""
    folder = os.environ.get(SLOTS_DIR_VAR) or os.path.join(
        tempfile.gettempdir(), f"tumorseg-gpu-slots-{os.getuid()}"
    )
    return Path(folder)


def driver_gpus() -> list[str]:
    """The indices of the GPUs the NVIDIA driver lists (none on a machine without one)."""
    if DRIVER_GPUS.is_dir():
        return [str(i) for i in range(len(list(DRIVER_GPUS.iterdir())))]
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
    return []


def usable_gpus(environ=os.environ) -> list[str]:
    """The GPUs a job may take: ``CUDA_VISIBLE_DEVICES``'s entries where it is set (empty
    or ``-1``: none), else the driver's."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        entries = [e.strip() for e in environ["CUDA_VISIBLE_DEVICES"].split(",")]
        entries = [e for e in entries if e]
        return [] if not entries or entries[0].startswith("-") else entries
    return driver_gpus()


def _try_slot(folder: Path, gpu: str) -> int | None:
    fd = os.open(folder / f"gpu-{gpu}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def claim_gpu(environ=os.environ, poll_s: float = 1.0) -> str | None:
    """Take a free GPU slot for this process and export it as ``CUDA_VISIBLE_DEVICES``
    (call before TensorFlow starts). Returns the GPU taken, or None where nothing was
    claimed: one GPU or none to choose from, a slot already held, or a scheduler's
    job. Waits (logged) while every slot is taken, which ``--resources gpu=N`` with N at
    most the number of GPUs avoids."""
    if _HELD:
        return environ.get("CUDA_VISIBLE_DEVICES")
    if "CUDA_VISIBLE_DEVICES" in environ and any(v in environ for v in SCHEDULER_VARS):
        return None  # the scheduler chose this job's GPUs
    gpus = usable_gpus(environ)
    if len(gpus) < 2:
        return None
    folder = slots_dir()
    folder.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for gpu in gpus:
            fd = _try_slot(folder, gpu)
            if fd is not None:
                _HELD.append(fd)
                environ["CUDA_VISIBLE_DEVICES"] = gpu
                log.info("GPU slot: this job uses GPU %s of %s", gpu, ",".join(gpus))
                return gpu
        if not waited:
            log.warning(
                "all %d GPU slots (%s) are taken: waiting for one (give --resources gpu=%d "
                "at most)",
                len(gpus),
                folder,
                len(gpus),
            )
            waited = True
        time.sleep(poll_s)


def grow_gpu_memory() -> list:
    """Turn on memory growth for every GPU TensorFlow sees (call after the thread set-up,
    before the first op), so that a job takes the GPU memory it uses, not all of it;
    returns TensorFlow's GPUs."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass
    return gpus
