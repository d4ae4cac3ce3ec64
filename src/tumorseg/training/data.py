"""Training input: which slices to use, how often to draw them, and tf.data pipelines.

Slices are streamed from the per-case files written by preprocessing
(``<preprocessed_dir>/<case>/image.npy``, ``label.npy``, ``slices.tsv``), memory-mapped, so
the dataset never has to fit in memory: only the slices of the batches in flight are read.

- Training and validation use only slices with brain voxels (``brain_voxels > 0``); slices
  of pure background carry no information and would only dilute the batches.
- Training: an index of (case, slice) is sampled per epoch in NumPy with a generator seeded
  by ``(seed, epoch)``: a shuffled pass over the slices, or, with ``lesion_sampling``,
  draws with replacement weighted by :func:`slice_weights`. Batches are read in parallel,
  augmented (:mod:`tumorseg.training.augment`, stateless seed ``(seed, step)``) and prefetched.
  Epoch ``e`` therefore always sees the same batches, also after a resume.
- Validation: every validation slice with brain voxels, in a fixed order, not augmented.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from tumorseg.errors import InputError
from tumorseg.io.tables import fold_numbers, read_splits


def voxel_columns(n_classes: int) -> list[str]:
    """The per-class voxel-count columns of a slice table (``voxels_0`` is background)."""
    return [f"voxels_{c}" for c in range(n_classes)]


def read_split(splits_path: str | Path, fold: int | None = None) -> tuple[list[str], list[str]]:
    """Training and validation cases of a split (sorted).

    Without ``fold``: the ``train`` and ``val`` rows. With ``fold`` f (cross-validation):
    the rows with ``fold == f`` validate, the other rows with ``fold >= 0`` train (rows of
    the test and predict splits never take part).
    """
    df = read_splits(splits_path)
    if fold is None:
        train = df.loc[df["split"] == "train", "case"]
        val = df.loc[df["split"] == "val", "case"]
    else:
        if "fold" not in df.columns:
            raise InputError(
                f"fold {fold} asked for, but the splits table has no `fold` column "
                "(set split.cv_folds >= 2)",
                path=splits_path,
            )
        folds = fold_numbers(df, splits_path)
        usable = (folds >= 0) & ~df["split"].isin(["test", "predict"])
        train = df.loc[usable & (folds != fold), "case"]
        val = df.loc[usable & (folds == fold), "case"]
    train, val = sorted(train), sorted(val)
    what = "" if fold is None else f" for fold {fold}"
    if not train:
        raise InputError(f"the split has no training cases{what}", path=splits_path)
    if not val:
        raise InputError(f"the split has no validation cases{what}", path=splits_path)
    return train, val


def read_slices(preprocessed_dir: str | Path, cases: list[str], n_classes: int = 4):
    """All slices of ``cases`` that hold brain voxels, from their ``slices.tsv``.

    Columns: ``case``, ``case_index`` (position in ``cases``), ``slice``, ``brain_voxels``,
    ``voxels_0`` .. ``voxels_<n-1>`` (ints; ``n_classes`` 0 for image translation, whose
    tables have a ``has_target`` column instead). A case without labels (empty voxel
    counts) or without a target is an error: it cannot be trained or validated on.
    """
    columns = voxel_columns(n_classes) if n_classes else ["has_target"]
    frames = []
    for i, case in enumerate(cases):
        path = Path(preprocessed_dir) / case / "slices.tsv"
        if not path.is_file():
            raise InputError("preprocessed slice table not found", case, path)
        df = pd.read_csv(path, sep="\t", dtype={"case": str}, keep_default_na=True)
        missing = [c for c in ("slice", "brain_voxels", *columns) if c not in df.columns]
        if missing:
            raise InputError(f"the slice table lacks the columns {missing}", case, path)
        if df[columns].isna().any().any() or (not n_classes and not df["has_target"].all()):
            raise InputError(
                "the case has no label (empty voxel counts), so it cannot be used for "
                "training or validation; put it in the predict split",
                case,
                path,
            )
        df = df.astype({"slice": int, "brain_voxels": int, **dict.fromkeys(columns, int)})
        df["case"] = case
        df["case_index"] = i
        frames.append(df.loc[df["brain_voxels"] > 0])
    out = pd.concat(frames, ignore_index=True)
    if out.empty:
        raise InputError(f"no slice with brain voxels in cases {', '.join(cases)}")
    return out[["case", "case_index", "slice", "brain_voxels", *columns]]


def slice_weights(slices_df: pd.DataFrame, lesion_sampling: bool, floor: float) -> np.ndarray:
    """Sampling probability of each slice (sums to 1).

    With lesion sampling and floor f: ``p = f / N + (1 - f) * t / sum(t)`` where t are the
    slice's tumour voxels (every class but background); uniform without lesion sampling or
    without any tumour voxel.
    """
    n = len(slices_df)
    if n == 0:
        raise ValueError("no slices to weight")
    uniform = np.full(n, 1.0 / n)
    if not lesion_sampling:
        return uniform
    columns = [c for c in slices_df.columns if c.startswith("voxels_") and c != "voxels_0"]
    tumour = slices_df[columns].to_numpy(dtype=np.float64).sum(axis=1)
    total = tumour.sum()
    if total <= 0:
        return uniform
    p = floor / n + (1.0 - floor) * tumour / total
    return p / p.sum()


def draw_epoch(weights: np.ndarray, n_draws: int, seed: int, epoch: int, weighted: bool):
    """Slice indices (into ``weights``) drawn for one epoch.

    ``weighted``: ``n_draws`` draws with replacement with probabilities ``weights``;
    otherwise shuffled passes over all slices (each seen once per pass). The generator is
    seeded by ``(seed, epoch)``.
    """
    rng = np.random.default_rng([int(seed), int(epoch)])
    n = len(weights)
    if weighted:
        return rng.choice(n, size=n_draws, p=weights)
    passes = [rng.permutation(n) for _ in range(math.ceil(n_draws / n))]
    return np.concatenate(passes)[:n_draws]


def open_case(folder: Path, case: str, regression: bool = False):
    """The memory-mapped image and label (or, ``regression``, target) of one preprocessed
    case, checked against the contract; clean errors name the case and the file."""
    name, kind = ("target", "float") if regression else ("label", "uint8")
    img_path, lab_path = folder / "image.npy", folder / f"{name}.npy"
    for p in (img_path, lab_path):
        if not p.is_file():
            raise InputError("preprocessed array not found", case, p)
    try:
        img = np.load(img_path, mmap_mode="r", allow_pickle=False)
        lab = np.load(lab_path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise InputError(f"cannot read the array ({err})", case, folder) from None
    if img.ndim != 4 or not np.issubdtype(img.dtype, np.floating):
        raise InputError(
            f"image must be a float (z, y, x, channels) array, found {img.dtype} "
            f"with shape {img.shape}",
            case,
            img_path,
        )
    good = np.issubdtype(lab.dtype, np.floating) if regression else lab.dtype == np.uint8
    if lab.ndim != 3 or not good or lab.shape != img.shape[:3]:
        raise InputError(
            f"{name} must be {kind} of shape {img.shape[:3]} (the image's), found "
            f"{lab.dtype} with shape {lab.shape}",
            case,
            lab_path,
        )
    return img, lab


class SliceReader:
    """Reads slices of memory-mapped per-case arrays (opened once, read on demand): the
    label classes, or with ``n_classes`` 0 (image translation) the z-scored target."""

    def __init__(self, preprocessed_dir: str | Path, cases: list[str], n_classes: int = 4):
        self.cases = list(cases)
        self.n_classes = int(n_classes)
        self.regression = self.n_classes == 0
        self.images: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        shape = None
        for case in self.cases:
            folder = Path(preprocessed_dir) / case
            img, lab = open_case(folder, case, self.regression)
            img_path = folder / "image.npy"
            if shape is None:
                shape = img.shape[1:]
            elif img.shape[1:] != shape:
                raise InputError(
                    f"slices of shape {img.shape[1:]} differ from the other cases' {shape}",
                    case,
                    img_path,
                )
            self.images.append(img)
            self.labels.append(lab)
        if shape is None:
            raise ValueError("no cases to read")
        self.height, self.width, self.channels = (int(s) for s in shape)

    def read(self, case_index: np.ndarray, slice_index: np.ndarray):
        """Images (float32, n×y×x×c) and labels (uint8, n×y×x; targets: float32) of the
        given slices."""
        n = len(case_index)
        images = np.empty((n, self.height, self.width, self.channels), np.float32)
        dtype = np.float32 if self.regression else np.uint8
        labels = np.empty((n, self.height, self.width), dtype)
        for i, (c, z) in enumerate(zip(case_index, slice_index, strict=True)):
            images[i] = self.images[c][z]
            labels[i] = self.labels[c][z]
            if self.regression:
                if not np.isfinite(labels[i]).all():
                    raise ValueError(f"case {self.cases[c]}: target.npy slice {z} is not finite")
            elif labels[i].max() >= self.n_classes:
                raise ValueError(
                    f"case {self.cases[c]}: label.npy slice {z} holds values >= "
                    f"{self.n_classes} "
                    "(an unlabelled case cannot be used for training)"
                )
        return images, labels


def dataset_options(threads: int):
    """Options of every training and validation dataset: deterministic order, ``threads``
    threads of its own, and no autotuning.

    Each map's parallelism and each prefetch buffer is set explicitly, so tf.data's
    autotuner has nothing to tune; its model thread only cost time: destroying a training
    iterator waited for it, 30-55 s after the last epoch of the demo run's training job.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.deterministic = True
    options.threading.private_threadpool_size = max(1, int(threads))
    options.autotune.enabled = False
    return options


def make_train_dataset(
    reader: SliceReader,
    slices_df: pd.DataFrame,
    settings: dict,
    steps_per_epoch: int,
    epochs: int,
    start_epoch: int = 0,
    threads: int = 2,
):
    """Batches ``(images, one-hot labels)`` for epochs ``start_epoch .. epochs - 1``
    (image translation: ``(images, targets (n, y, x, 1))``).

    Each epoch has ``steps_per_epoch`` batches of ``settings["batch_size"]`` slices, drawn
    by :func:`draw_epoch` and augmented with ``settings["augment"]`` (one transform for
    image and label alike; a target is an intensity, resampled bilinearly like the image);
    the dataset ends after the last epoch.
    """
    import tensorflow as tf

    from tumorseg.training.augment import (
        apply_transforms,
        is_identity,
        random_affine,
        random_transforms,
    )

    batch = int(settings["batch_size"])
    seed = int(settings["seed"])
    weighted = bool(settings["lesion_sampling"])
    weights = slice_weights(slices_df, weighted, float(settings["sampling_floor"]))
    case_index = slices_df["case_index"].to_numpy(np.int64)
    slice_index = slices_df["slice"].to_numpy(np.int64)
    h, w, c = reader.height, reader.width, reader.channels

    def plan():
        for epoch in range(start_epoch, epochs):
            rows = draw_epoch(weights, steps_per_epoch * batch, seed, epoch, weighted)
            for s in range(steps_per_epoch):
                yield epoch * steps_per_epoch + s, rows[s * batch : (s + 1) * batch]

    def read(rows):
        return reader.read(case_index[rows], slice_index[rows])

    label_type = tf.float32 if reader.regression else tf.uint8

    def load(step, rows):
        images, labels = tf.numpy_function(read, [rows], [tf.float32, label_type], stateful=False)
        images.set_shape((batch, h, w, c))
        labels.set_shape((batch, h, w))
        return step, images, labels

    augment = dict(settings["augment"])

    def transform(step, images, labels):
        key = tf.stack([seed, step])
        if reader.regression:  # the target rides along as one more bilinear channel
            both = tf.concat([images, labels[..., None]], axis=-1)
            if not is_identity(augment):
                transforms = random_transforms(batch, h, w, augment, key)
                both = apply_transforms(both, transforms, "BILINEAR")
            return both[..., :c], both[..., c:]
        images, labels = random_affine(images, labels, augment, key)
        return images, tf.one_hot(labels, reader.n_classes, dtype=tf.float32)

    ds = tf.data.Dataset.from_generator(
        plan,
        output_signature=(
            tf.TensorSpec((), tf.int64),
            tf.TensorSpec((batch,), tf.int64),
        ),
    )
    ds = ds.map(load, num_parallel_calls=max(1, threads))
    ds = ds.map(transform, num_parallel_calls=max(1, threads))
    return ds.prefetch(2).with_options(dataset_options(threads))


def make_val_dataset(
    reader: SliceReader, slices_df: pd.DataFrame, batch_size: int, threads: int = 2
):
    """Batches ``(images, one-hot labels)`` of all given slices, in order, unaugmented."""
    import tensorflow as tf

    case_index = slices_df["case_index"].to_numpy(np.int64)
    slice_index = slices_df["slice"].to_numpy(np.int64)
    n = len(slices_df)
    n_batches = math.ceil(n / batch_size)
    h, w, c = reader.height, reader.width, reader.channels

    def read(b):
        sl = slice(int(b) * batch_size, min(n, (int(b) + 1) * batch_size))
        return reader.read(case_index[sl], slice_index[sl])

    label_type = tf.float32 if reader.regression else tf.uint8

    def load(b):
        images, labels = tf.numpy_function(read, [b], [tf.float32, label_type], stateful=False)
        images.set_shape((None, h, w, c))
        labels.set_shape((None, h, w))
        if reader.regression:
            return images, labels[..., None]
        return images, tf.one_hot(labels, reader.n_classes, dtype=tf.float32)

    ds = tf.data.Dataset.range(n_batches).map(load, num_parallel_calls=max(1, threads))
    return ds.prefetch(2).with_options(dataset_options(threads))
