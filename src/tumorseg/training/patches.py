"""3D training input: patches (sub-volumes) drawn to hold tumour, read from memory maps.

The per-case arrays written by preprocessing (``<preprocessed_dir>/<case>/image.npy``,
``label.npy``) are memory-mapped (:class:`PatchReader`), so only the patches in flight are
read. Patch sizes come in (x, y, z) order like every size in the config; arrays are
(z, y, x) and :func:`patch_zyx` converts once.

- Sampling (:class:`PatchSampler`, the 3D tutorial's rule): a case is drawn uniformly, then
  a start uniformly over the starts that keep the patch inside the volume. A share
  ``unconstrained_share`` of the draws keeps that position (so background is seen); the
  others are redrawn, at most ``retries`` times, until the patch's tumour fraction (voxels
  with label > 0 over the patch's voxels) reaches ``min_tumour_fraction`` (5 %). A draw
  still short of it is moved to a patch centred on a random tumour voxel of its case, or
  kept as it is when the case holds no tumour; both are counted (``sampler.stats``). The
  tumour count of every possible patch is computed once per case from a 3D integral image
  of ``label > 0``, so each candidate costs one look-up. Draws of epoch ``e`` come from
  ``np.random.default_rng([seed, e])``: an epoch always sees the same patches, also after a
  resume.
- Augmentation (:func:`random_affine_3d`): one in-plane affine transform per patch (the
  model's ``augment`` settings: left-right flip of the x axis, rotation about the z axis,
  shift, zoom and shear in the (y, x) plane), the same for every slice of the patch, on
  image (bilinear) and label (nearest) alike; stateless seed ``(seed, step)``.
- Standardisation: preprocessing already z-scores each channel inside the brain (0
  outside), which is the tutorial's channel standardisation; ``patch_standardise`` adds the
  tutorial's per-patch variant (:func:`standardise_patches`).
- Validation: every validation volume predicted whole, window by window, as inference
  predicts it (:mod:`tumorseg.training.validation`; the windows: :func:`validation_tiles`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tumorseg.errors import InputError
from tumorseg.training.data import dataset_options

#: Kinds of draw reported by :meth:`PatchSampler.draw_detailed`.
UNCONSTRAINED, MET, FALLBACK, NO_TUMOUR = 0, 1, 2, 3
KIND_NAMES = ("unconstrained", "met", "fallbacks", "no_tumour")


def patch_zyx(patch_xyz) -> tuple[int, int, int]:
    """A patch size given in (x, y, z) order as (z, y, x), checked to be 3 positive ints."""
    size = tuple(int(s) for s in patch_xyz)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"a patch size is three positive integers (x, y, z), got {patch_xyz}")
    return size[::-1]


def _open_case(folder: Path, case: str) -> tuple[np.ndarray, np.ndarray]:
    """The memory-mapped image and label of one case, checked against the contract."""
    from tumorseg.training.data import open_case

    return open_case(folder, case)


class PatchReader:
    """Reads patches of memory-mapped per-case volumes (opened once, read on demand).

    Attributes: ``cases``, ``n_classes``, ``patch_xyz``, ``patch`` (z, y, x), ``channels``,
    ``shapes`` (each case's (z, y, x)), ``images``, ``labels`` (the memory maps) and
    ``label_paths``. Cases may differ in shape, not in channels.
    """

    def __init__(self, preprocessed_dir: str | Path, cases: list[str], n_classes: int, patch_xyz):
        self.cases = list(cases)
        if not self.cases:
            raise ValueError("no cases to read")
        self.n_classes = int(n_classes)
        self.patch_xyz = tuple(int(s) for s in patch_xyz)
        self.patch = patch_zyx(patch_xyz)
        self.images: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.label_paths: list[Path] = []
        for case in self.cases:
            folder = Path(preprocessed_dir) / case
            img, lab = _open_case(folder, case)
            if self.images and img.shape[3] != self.images[0].shape[3]:
                raise InputError(
                    f"{img.shape[3]} channels, the other cases have {self.images[0].shape[3]}",
                    case,
                    folder / "image.npy",
                )
            self.images.append(img)
            self.labels.append(lab)
            self.label_paths.append(folder / "label.npy")
        self.channels = int(self.images[0].shape[3])
        self.shapes = [tuple(int(s) for s in lab.shape) for lab in self.labels]

    def read(self, case_index, starts_zyx):
        """Images (float32, n×pz×py×px×c) and labels (uint8, n×pz×py×px) of the patches.

        A patch reaching past the volume (a volume shorter than the patch, or a start near
        its end) is padded with 0 in the image and background (0) in the label.
        """
        case_index = np.asarray(case_index, np.int64).reshape(-1)
        starts = np.asarray(starts_zyx, np.int64).reshape(-1, 3)
        n, patch = len(case_index), np.array(self.patch)
        images = np.zeros((n, *self.patch, self.channels), np.float32)
        labels = np.zeros((n, *self.patch), np.uint8)
        for i, (c, start) in enumerate(zip(case_index, starts, strict=True)):
            lo = np.maximum(start, 0)
            hi = np.minimum(start + patch, self.shapes[c])
            if np.any(hi <= lo):
                continue
            src = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))
            images[i][dst] = self.images[c][src]
            labels[i][dst] = self.labels[c][src]
            if labels[i].max() >= self.n_classes:
                raise ValueError(
                    f"case {self.cases[c]}: label.npy holds values >= {self.n_classes} "
                    "(an unlabelled case cannot be used for training)"
                )
        return images, labels


def integral_image(mask: np.ndarray) -> np.ndarray:
    """Summed-area table (Z+1, Y+1, X+1) int32 of a 3D mask: ``sat[z, y, x]`` counts the
    true voxels of ``mask[:z, :y, :x]``."""
    sat = np.zeros(tuple(s + 1 for s in mask.shape), np.int32)
    sat[1:, 1:, 1:] = mask.astype(np.int32).cumsum(0).cumsum(1).cumsum(2)
    return sat


def box_sums(sat: np.ndarray, starts_zyx, patch) -> np.ndarray:
    """True voxels (int64, n) of the mask inside patches at ``starts_zyx`` (n, 3) of size
    ``patch`` (z, y, x), clipped to the volume, from its :func:`integral_image`."""
    starts = np.asarray(starts_zyx, np.int64).reshape(-1, 3)
    shape = np.array(sat.shape) - 1
    lo = np.clip(starts, 0, shape)
    hi = np.clip(starts + np.asarray(patch, np.int64), 0, shape)
    total = np.zeros(len(starts), np.int64)
    for corner in range(8):
        pick = [(corner >> axis) & 1 for axis in range(3)]  # 1: the high end of that axis
        idx = tuple(np.where(p, hi[:, a], lo[:, a]) for a, p in enumerate(pick))
        sign = -1 if (3 - sum(pick)) % 2 else 1
        total += sign * sat[idx].astype(np.int64)
    return total


def start_counts(sat: np.ndarray, patch) -> np.ndarray:
    """Tumour voxels (int32) of the patch at every valid start, shape ``max(0, S - p) + 1``
    per axis: the patch stays inside the volume, or starts at 0 when it is longer."""
    shape = np.array(sat.shape) - 1
    q = np.minimum(np.asarray(patch), shape)  # the part of the patch inside the volume
    n = shape - q + 1

    def part(pick):
        return sat[tuple(slice(o, o + k) for o, k in zip(q * pick, n, strict=True))]

    total = np.zeros(tuple(n), np.int64)
    for corner in range(8):
        pick = np.array([(corner >> axis) & 1 for axis in range(3)])
        sign = -1 if (3 - pick.sum()) % 2 else 1
        total += sign * part(pick).astype(np.int64)
    return total.astype(np.int32)


class PatchSampler:
    """Draws patch positions whose tumour fraction reaches a minimum (see the module doc).

    Parameters
    ----------
    reader_or_labels
        A :class:`PatchReader` (its labels are checked: an unlabelled case is an
        :class:`InputError`) or a sequence of (z, y, x) label arrays.
    patch_xyz
        Patch size in (x, y, z) order.
    min_tumour_fraction, unconstrained_share, retries, seed
        The rule: the share of draws taken anywhere, the redraws allowed to the others.

    Each case keeps the tumour count of every valid patch start (int32, at most 4 bytes a
    voxel; 62 values for 96x96x16 patches of a 96x96x77 volume), computed once from its
    integral image. ``stats`` holds counts over all draws so far (``draws``, and per kind:
    ``unconstrained``, ``met``, ``fallbacks`` [moved onto a tumour voxel], ``no_tumour``
    [kept, the case holds none]); ``epoch_stats[e]`` the same for epoch ``e``'s draw.
    """

    def __init__(
        self,
        reader_or_labels,
        patch_xyz,
        min_tumour_fraction: float = 0.05,
        unconstrained_share: float = 0.33,
        retries: int = 20,
        seed: int = 0,
    ):
        self.patch = np.array(patch_zyx(patch_xyz), np.int64)
        self.min_tumour_fraction = float(min_tumour_fraction)
        self.unconstrained_share = float(unconstrained_share)
        self.retries = int(retries)
        self.seed = int(seed)
        if not 0 <= self.unconstrained_share <= 1 or self.retries < 0:
            raise ValueError("unconstrained_share must be in [0, 1] and retries >= 0")
        self._labels = _checked_labels(reader_or_labels)
        self.shapes = np.array([lab.shape for lab in self._labels], np.int64).reshape(-1, 3)
        tables, tumour = [], []
        for lab in self._labels:
            sat = integral_image(np.asarray(lab) > 0)
            tables.append(start_counts(sat, self.patch))
            tumour.append(int(sat[-1, -1, -1]))
        self.n_starts = np.array([t.shape for t in tables], np.int64)
        self.tumour_voxels = np.array(tumour, np.int64)
        self._offsets = np.cumsum([0] + [t.size for t in tables])[:-1]
        self._counts = np.concatenate([t.reshape(-1) for t in tables])
        self._tumour_index: dict[int, np.ndarray] = {}
        self.stats = dict.fromkeys(("draws", *KIND_NAMES), 0)
        self.epoch_stats: dict[int, dict] = {}

    def fraction(self, case_index, starts_zyx) -> np.ndarray:
        """Tumour fraction (float64, n) of patches at valid starts (one look-up each)."""
        c = np.asarray(case_index, np.int64)
        s = np.asarray(starts_zyx, np.int64).reshape(-1, 3)
        ny, nx = self.n_starts[c, 1], self.n_starts[c, 2]
        flat = self._offsets[c] + (s[:, 0] * ny + s[:, 1]) * nx + s[:, 2]
        return self._counts[flat] / float(np.prod(self.patch))

    def _uniform_starts(self, rng, case_index) -> np.ndarray:
        return rng.integers(0, self.n_starts[case_index])

    def _tumour_voxels_of(self, c: int) -> np.ndarray:
        if c not in self._tumour_index:  # only cases that needed a fallback
            self._tumour_index[c] = np.flatnonzero(np.asarray(self._labels[c]) > 0).astype(np.int64)
        return self._tumour_index[c]

    def _centre_on_tumour(self, rng, case_index, starts, rows) -> None:
        """Move the draws ``rows`` onto patches centred on random tumour voxels."""
        for c in np.unique(case_index[rows]):
            mine = rows[case_index[rows] == c]
            voxels = self._tumour_voxels_of(int(c))
            picked = voxels[rng.integers(0, len(voxels), size=len(mine))]
            centre = np.stack(np.unravel_index(picked, tuple(self.shapes[c])), axis=1)
            starts[mine] = np.clip(centre - self.patch // 2, 0, self.n_starts[c] - 1)

    def draw_detailed(self, epoch: int, n: int):
        """Like :meth:`draw`, plus the kind of each draw (int8: :data:`UNCONSTRAINED`,
        :data:`MET`, :data:`FALLBACK`, :data:`NO_TUMOUR`)."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        case_index = rng.integers(0, len(self._labels), size=int(n))
        free = rng.random(int(n)) < self.unconstrained_share
        starts = self._uniform_starts(rng, case_index)
        short = ~free & (self.fraction(case_index, starts) < self.min_tumour_fraction)
        for _ in range(self.retries):
            rows = np.flatnonzero(short)
            if not rows.size:
                break
            starts[rows] = self._uniform_starts(rng, case_index[rows])
            short[rows] = self.fraction(case_index[rows], starts[rows]) < self.min_tumour_fraction
        has_tumour = self.tumour_voxels[case_index] > 0
        self._centre_on_tumour(rng, case_index, starts, np.flatnonzero(short & has_tumour))
        kind = np.where(free, UNCONSTRAINED, MET).astype(np.int8)
        kind[short & has_tumour] = FALLBACK
        kind[short & ~has_tumour] = NO_TUMOUR
        counts = {"draws": int(n), **{k: int(np.sum(kind == i)) for i, k in enumerate(KIND_NAMES)}}
        self.epoch_stats[int(epoch)] = counts
        for key, value in counts.items():
            self.stats[key] += value
        return case_index, starts, kind

    def draw(self, epoch: int, n: int):
        """``n`` patches of epoch ``epoch``: case indices (int64, n) and starts (int64,
        n×3, z, y, x), the same for the same ``(seed, epoch)``."""
        case_index, starts, _ = self.draw_detailed(epoch, n)
        return case_index, starts


def _checked_labels(reader_or_labels) -> list:
    if not isinstance(reader_or_labels, PatchReader):
        labels = [np.asarray(lab) for lab in reader_or_labels]
        if not labels or any(lab.ndim != 3 for lab in labels):
            raise ValueError("labels must be a non-empty sequence of (z, y, x) arrays")
        return labels
    reader = reader_or_labels
    for case, lab, path in zip(reader.cases, reader.labels, reader.label_paths, strict=True):
        top = int(lab.max())
        if top >= reader.n_classes:
            raise InputError(
                f"label holds the value {top} (>= {reader.n_classes} classes): an unlabelled "
                "case cannot be used for training or validation; put it in the predict split",
                case,
                path,
            )
    return reader.labels


def standardise_patches(images: np.ndarray) -> np.ndarray:
    """Each channel of each patch (n, z, y, x, c) z-scored over its non-zero voxels (the 3D
    tutorial's standardisation); zeros (outside the brain, padding) stay 0, a channel with
    no spread is only centred."""
    mask = images != 0
    count = np.maximum(mask.sum(axis=(1, 2, 3), keepdims=True), 1)
    mean = images.sum(axis=(1, 2, 3), keepdims=True) / count
    centred = np.where(mask, images - mean, 0)
    std = np.sqrt((centred**2).sum(axis=(1, 2, 3), keepdims=True) / count)
    return (centred / np.where(std > 0, std, 1)).astype(np.float32)


def random_affine_3d(images, labels, augment: dict, seed):
    """One random in-plane affine transform per patch, the same for all its slices.

    ``images`` float (b, z, y, x, c), bilinear; ``labels`` integer (b, z, y, x), nearest;
    ``augment``: the model's ``augment`` settings (flip of the x axis, rotation about the
    z axis [deg], shift, zoom, shear in the (y, x) plane), as in :mod:`tumorseg.training.augment`,
    whose transforms are reused with the z axis folded into the batch; 0 comes in from
    outside. ``seed``: shape-(2,) integer seed of the stateless RNG.
    """
    import tensorflow as tf

    from tumorseg.training.augment import apply_transforms, is_identity, random_transforms

    if is_identity(augment):
        return images, labels
    shape = tf.shape(images)
    b, z, y, x, c = (shape[i] for i in range(5))
    transforms = tf.repeat(random_transforms(b, y, x, augment, seed), z, axis=0)
    flat = tf.reshape(images, tf.stack([b * z, y, x, c]))
    out_images = tf.reshape(apply_transforms(flat, transforms, "BILINEAR"), shape)
    flat_labels = tf.reshape(labels, tf.stack([b * z, y, x, 1]))
    out_labels = tf.reshape(apply_transforms(flat_labels, transforms, "NEAREST"), shape[:4])
    return tf.ensure_shape(out_images, images.shape), tf.ensure_shape(out_labels, labels.shape)


def _read_fn(reader: PatchReader, standardise: bool):
    """``reader.read``, followed by :func:`standardise_patches` when asked."""

    def read(cases, starts):
        images, labels = reader.read(cases, starts)
        return (standardise_patches(images) if standardise else images), labels

    return read


def make_patch_train_dataset(
    reader: PatchReader,
    sampler: PatchSampler,
    settings: dict,
    steps_per_epoch: int,
    epochs: int,
    start_epoch: int = 0,
    threads: int = 2,
):
    """Batches ``(images (B, pz, py, px, C) float32, one-hot labels (B, pz, py, px,
    n_classes) float32)`` for epochs ``start_epoch .. epochs - 1``.

    Each epoch has ``steps_per_epoch`` batches of ``settings["batch_size"]`` patches drawn
    by ``sampler.draw(epoch, ...)``, read in parallel, optionally standardised per patch
    (``settings.get("patch_standardise")``, off by default: preprocessing already z-scores
    each channel inside the brain), augmented by :func:`random_affine_3d` with
    ``settings["augment"]`` and the stateless seed ``(settings["seed"], step)``, and
    prefetched; the dataset ends after the last epoch.
    """
    import tensorflow as tf

    batch, seed = int(settings["batch_size"]), int(settings["seed"])
    augment, patch, c = dict(settings["augment"]), reader.patch, reader.channels

    def plan():
        for epoch in range(start_epoch, epochs):
            cases, starts = sampler.draw(epoch, steps_per_epoch * batch)
            for s in range(steps_per_epoch):
                rows = slice(s * batch, (s + 1) * batch)
                yield epoch * steps_per_epoch + s, cases[rows], starts[rows]

    read = _read_fn(reader, bool(settings.get("patch_standardise", False)))

    def load(step, cases, starts):
        images, labels = tf.numpy_function(
            read, [cases, starts], [tf.float32, tf.uint8], stateful=False
        )
        return (
            step,
            tf.ensure_shape(images, (batch, *patch, c)),
            tf.ensure_shape(labels, (batch, *patch)),
        )

    def transform(step, images, labels):
        images, labels = random_affine_3d(images, labels, augment, tf.stack([seed, step]))
        return images, tf.one_hot(labels, reader.n_classes, dtype=tf.float32)

    ds = tf.data.Dataset.from_generator(
        plan,
        output_signature=(
            tf.TensorSpec((), tf.int64),
            tf.TensorSpec((batch,), tf.int64),
            tf.TensorSpec((batch, 3), tf.int64),
        ),
    )
    ds = ds.map(load, num_parallel_calls=max(1, threads))
    ds = ds.map(transform, num_parallel_calls=max(1, threads))
    return ds.prefetch(2).with_options(dataset_options(threads))


def validation_tiles(shape_zyx, patch_xyz, overlap: float = 0.5) -> np.ndarray:
    """Starts (n, 3) int64, z slowest, of the windows that inference slides over a (z, y, x)
    volume (:func:`tumorseg.training.sliding_window.tile_starts` with the same ``overlap``):
    the first at 0, the last flush with the end of each axis, or the single start 0 when
    the axis is no longer than the patch (the patch is then padded)."""
    from tumorseg.training.sliding_window import tile_starts

    return tile_starts(shape_zyx, patch_zyx(patch_xyz), overlap)


def validation_index(reader: PatchReader, overlap: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Case indices (n,) and starts (n, 3) of every validation tile of every case, in order."""
    tiles = [validation_tiles(shape, reader.patch_xyz, overlap) for shape in reader.shapes]
    case_index = np.concatenate([np.full(len(t), i, np.int64) for i, t in enumerate(tiles)])
    return case_index, np.concatenate(tiles)
