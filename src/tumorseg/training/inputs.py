"""The input of a training job: its cases, slices (or 3D patches), readers, batch plan and
datasets."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tumorseg.training.memory import estimate_mem_mb

log = logging.getLogger("tumorseg.train")  # one logger for every part of the training job


@dataclass
class TrainingData:
    """The slices, readers and batch plan of one training run."""

    train_cases: list[str]
    val_cases: list[str]
    train_slices: pd.DataFrame
    val_slices: pd.DataFrame
    train_reader: object
    val_reader: object
    shape: tuple[int, ...]  # (y, x, C) slices, or (z, y, x, C) patches
    steps: int
    epochs: int
    sampler: object = None  # 3D: the tumour-fraction patch sampler
    windows: dict | None = None  # 3D: the sliding window of inference (overlap, gaussian)

    @property
    def n_channels(self) -> int:
        return int(self.shape[-1])

    @property
    def size(self):
        """The model's input size: the slice size, or the (z, y, x) patch size."""
        return tuple(self.shape[:3]) if self.sampler is not None else int(self.shape[0])


def _patch_data(
    splits_path, preprocessed_dir, settings, fold, n_classes, windows=None
) -> TrainingData:
    """3D training (unet3d): patches of the training volumes drawn with a tumour-fraction
    floor, validation on the validation volumes as inference tiles them (``windows``:
    ``overlap`` and ``gaussian``, those of :data:`~tumorseg.training.validation.DEFAULT_WINDOWS`
    when None)."""
    import numpy as np

    from tumorseg.training import data, patches
    from tumorseg.training.validation import DEFAULT_WINDOWS

    train_cases, val_cases = data.read_split(splits_path, fold)
    train_slices = data.read_slices(preprocessed_dir, train_cases, n_classes)
    val_slices = data.read_slices(preprocessed_dir, val_cases, n_classes)
    patch = [int(v) for v in settings["patch_size"]]  # (x, y, z)
    train_reader = patches.PatchReader(preprocessed_dir, train_cases, n_classes, patch)
    val_reader = patches.PatchReader(preprocessed_dir, val_cases, n_classes, patch)
    sampler = patches.PatchSampler(
        train_reader,
        patch,
        float(settings["min_tumour_fraction"]),
        float(settings["unconstrained_share"]),
        int(settings["patch_retries"]),
        int(settings["seed"]),
    )
    first = np.load(Path(preprocessed_dir) / train_cases[0] / "image.npy", mmap_mode="r")
    batch = int(settings["batch_size"])
    per_case = math.ceil(first.shape[0] / patch[2])  # patches covering a volume's depth
    steps = settings.get("steps_per_epoch") or math.ceil(len(train_cases) * per_case / batch)
    shape = (patch[2], patch[1], patch[0], int(first.shape[-1]))
    log.info(
        "3D training on %d cases, validating on %d; patches %s (x, y, z), %d epochs of %d "
        "batches of %d; memory estimate %d MB",
        len(train_cases),
        len(val_cases),
        "x".join(map(str, patch)),
        int(settings["epochs"]),
        steps,
        batch,
        estimate_mem_mb(settings, shape[-1], n_classes),
    )
    return TrainingData(
        train_cases, val_cases, train_slices, val_slices, train_reader, val_reader, shape,
        steps, int(settings["epochs"]), sampler, dict(windows or DEFAULT_WINDOWS),
    )  # fmt: skip


def training_data(
    splits_path, preprocessed_dir, settings, fold, n_classes, windows=None
) -> TrainingData:
    """The cases, readers and batch plan of a run: 2D slices, or 3D patches (``windows``:
    the sliding window its validation predicts with, as inference does)."""
    from tumorseg.training import data

    if settings["architecture"] == "unet3d":
        return _patch_data(splits_path, preprocessed_dir, settings, fold, n_classes, windows)

    train_cases, val_cases = data.read_split(splits_path, fold)
    train_slices = data.read_slices(preprocessed_dir, train_cases, n_classes)
    val_slices = data.read_slices(preprocessed_dir, val_cases, n_classes)
    train_reader = data.SliceReader(preprocessed_dir, train_cases, n_classes)
    val_reader = data.SliceReader(preprocessed_dir, val_cases, n_classes)
    shape = (train_reader.height, train_reader.width, train_reader.channels)
    if (val_reader.height, val_reader.width, val_reader.channels) != shape:
        raise ValueError("training and validation slices differ in shape")
    if shape[0] != shape[1]:
        raise ValueError(f"slices must be square, found {shape[0]}x{shape[1]}")
    batch = int(settings["batch_size"])
    steps = settings.get("steps_per_epoch") or math.ceil(len(train_slices) / batch)
    epochs = int(settings["epochs"])
    log.info(
        "training on %d cases (%d slices), validating on %d cases (%d slices); "
        "%d epochs of %d batches of %d",
        len(train_cases),
        len(train_slices),
        len(val_cases),
        len(val_slices),
        epochs,
        steps,
        batch,
    )
    return TrainingData(
        train_cases, val_cases, train_slices, val_slices, train_reader, val_reader, shape,
        steps, epochs,
    )  # fmt: skip


def datasets(d: TrainingData, settings: dict, start_epoch: int, threads: int):
    """The training and validation datasets: slices, or 3D patches (and no validation
    dataset: a 3D model is validated on whole volumes, :mod:`tumorseg.training.validation`)."""
    from tumorseg.training import data, patches

    batch = int(settings["batch_size"])
    if d.sampler is not None:
        train = patches.make_patch_train_dataset(
            d.train_reader, d.sampler, settings, d.steps, d.epochs, start_epoch, threads
        )
        return train, None  # validated whole, volume by volume (training.validation)
    train = data.make_train_dataset(
        d.train_reader, d.train_slices, settings, d.steps, d.epochs, start_epoch, threads
    )
    return train, data.make_val_dataset(d.val_reader, d.val_slices, batch, threads)


def val_samples(d: TrainingData) -> tuple[int, str]:
    """The validation samples of an epoch and their unit (slices, or 3D tiles)."""
    if d.sampler is None:
        return len(d.val_slices), "slices"
    from tumorseg.training.patches import validation_index

    return len(validation_index(d.val_reader, float(d.windows["overlap"]))[0]), "patches"
