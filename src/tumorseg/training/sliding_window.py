"""Sliding-window inference over a whole volume, with nnU-Net's tiling and Gaussian weighting.

A volume (z, y, x, channels) is padded with 0 at the end of every axis shorter than the
patch (as :class:`tumorseg.training.patches.PatchReader` pads training patches, so a small volume
sits at the start of its window in both), tiled by :func:`window_starts` per axis, and each
tile's class probabilities are accumulated with the weights of :func:`gaussian_importance`
(or uniform weights); the sum is divided by the summed weights and the padding cropped off.
Voxels near a tile's border, where a network sees the least context, so count less.

The model is any callable ``predict_fn(batch (b, pz, py, px, C) float32) -> (b, pz, py,
px, n_classes)`` (NumPy arrays or tensors), so this module needs neither Keras nor
TensorFlow. It is the one way a 3D model sees a whole volume: the prediction of a case
(:mod:`tumorseg.inference.predict`) and the validation that picks the best epoch
(:mod:`tumorseg.training.validation`) both use it, so they tile alike.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np


def window_starts(size: int, patch: int, overlap: float = 0.5) -> list[int]:
    """Starts of the windows along one axis (nnU-Net's ``compute_steps_for_sliding_window``).

    The target step is ``patch * (1 - overlap)``; as few windows as that step allows cover
    the axis, spread evenly: ``n = ceil((size - patch) / step) + 1`` windows at
    ``round(i * (size - patch) / (n - 1))`` (NumPy rounding, half to even), so the first
    starts at 0 and the last ends flush with the axis. One window (start 0) when the axis
    is no longer than the patch (the volume is then padded to the patch). Repeated starts
    (only when ``patch * (1 - overlap) < 1``) are kept once.
    """
    size, patch = int(size), int(patch)
    if patch < 1 or size < 1:
        raise ValueError(f"size and patch must be positive, got {size} and {patch}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if size <= patch:
        return [0]
    target_step = patch * (1.0 - overlap)
    n = int(np.ceil((size - patch) / target_step)) + 1
    actual_step = (size - patch) / (n - 1)
    return sorted({int(np.round(actual_step * i)) for i in range(n)})


def gaussian_importance(patch_zyx, sigma_scale: float = 0.125) -> np.ndarray:
    """Weights of a window's voxels (nnU-Net's ``compute_gaussian``), float32, patch-shaped.

    A unit impulse at the centre voxel (``patch // 2`` per axis) smoothed by
    ``scipy.ndimage.gaussian_filter`` with sigma ``patch * sigma_scale`` per axis (constant
    0 border, truncated at 4 sigma), scaled to a maximum of 1; voxels left at 0 get the
    smallest non-zero weight, so every voxel counts a little and no division by 0 follows.
    """
    from scipy.ndimage import gaussian_filter

    patch = tuple(int(p) for p in patch_zyx)
    impulse = np.zeros(patch, np.float64)
    impulse[tuple(p // 2 for p in patch)] = 1.0
    sigmas = [p * float(sigma_scale) for p in patch]
    weights = gaussian_filter(impulse, sigmas, 0, mode="constant", cval=0.0)
    weights = (weights / weights.max()).astype(np.float32)
    weights[weights == 0] = weights[weights != 0].min()
    return weights


def tile_starts(shape_zyx, patch_zyx, overlap: float = 0.5) -> np.ndarray:
    """All window starts (n, 3) int64 of a volume, z slowest, x fastest."""
    axes = [window_starts(s, p, overlap) for s, p in zip(shape_zyx, patch_zyx, strict=True)]
    return np.array(list(itertools.product(*axes)), np.int64).reshape(-1, 3)


def _predict_tiles(predict_fn, tiles: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.asarray(predict_fn(tiles), dtype=np.float32)
    expected = (*tiles.shape[:4], n_classes)
    if out.shape != expected:
        raise ValueError(f"predict_fn returned shape {out.shape}, expected {expected}")
    return out


def predict_volume(
    predict_fn: Callable,
    image_zyxc: np.ndarray,
    patch_xyz,
    n_classes: int,
    overlap: float = 0.5,
    gaussian: bool = True,
    batch_size: int = 2,
) -> np.ndarray:
    """Class probabilities (Z, Y, X, n_classes) float32 of a whole volume, window by window.

    Parameters
    ----------
    predict_fn
        Maps a batch of tiles (b, pz, py, px, C) float32 to (b, pz, py, px, n_classes)
        probabilities, e.g. ``lambda x: model(x, training=False)``.
    image_zyxc
        The volume (Z, Y, X, C), any float dtype (memory-mapped arrays are fine).
    patch_xyz
        Window size in (x, y, z) order, like every size in the config.
    overlap
        Fraction of a window shared with its neighbour (the target, see
        :func:`window_starts`); 0.5 is nnU-Net's default.
    gaussian
        Weight voxels by :func:`gaussian_importance` (else uniformly).
    batch_size
        Tiles per call of ``predict_fn``.

    Returns
    -------
    The weighted mean of the tiles' probabilities at every voxel: it sums to 1 over the
    classes (to float32 rounding) when every prediction does.
    """
    patch = tuple(int(p) for p in reversed(tuple(patch_xyz)))
    image = np.asarray(image_zyxc, dtype=np.float32)
    if image.ndim != 4 or len(patch) != 3:
        raise ValueError(f"expected a (z, y, x, c) volume and a 3D patch, got {image.shape}")
    shape = image.shape[:3]
    padded_shape = tuple(max(s, p) for s, p in zip(shape, patch, strict=True))
    if padded_shape != shape:
        pad = [(0, ps - s) for ps, s in zip(padded_shape, shape, strict=True)] + [(0, 0)]
        image = np.pad(image, pad)
    weights = gaussian_importance(patch) if gaussian else np.ones(patch, np.float32)
    probs = np.zeros((*padded_shape, int(n_classes)), np.float32)
    total = np.zeros(padded_shape, np.float32)
    starts = tile_starts(padded_shape, patch, overlap)
    for first in range(0, len(starts), max(1, int(batch_size))):
        chunk = starts[first : first + max(1, int(batch_size))]
        boxes = [tuple(slice(a, a + p) for a, p in zip(s, patch, strict=True)) for s in chunk]
        tiles = np.stack([image[box] for box in boxes])
        out = _predict_tiles(predict_fn, tiles, int(n_classes))
        for box, tile_probs in zip(boxes, out, strict=True):
            probs[box] += tile_probs * weights[..., None]
            total[box] += weights
    probs /= total[..., None]
    return probs[: shape[0], : shape[1], : shape[2]]
