"""Image-similarity metrics of a synthetic image against the real one, inside the brain.

Conventions (tested in ``tests/test_image_metrics.py``):

* Arrays are ``(z, y, x)`` (any dimensionality works: a 2D ``(y, x)`` image too) and hold
  z-scores of the target modality; only the voxels of the boolean brain ``mask`` count.
  Both images are set to 0 outside the brain before anything is computed.
* **Data range** ``L``: z-scores have no fixed range, so ``L`` is the range of the *real*
  image inside the brain, ``max - min`` over the brain voxels, unless ``data_range`` is given
  (the evaluation passes the real target's range for the model, the baseline and the
  ceiling alike). It is passed explicitly to scikit-image.
* **MAE** and **MSE**: the mean absolute and squared difference over the brain voxels
  (``skimage.metrics.mean_squared_error`` on the brain voxels for MSE).
* **PSNR** ``= 10 log10(L^2 / MSE)`` in dB, from the masked MSE
  (``skimage.metrics.peak_signal_noise_ratio`` on the brain voxels); ``inf`` when MSE is 0.
* **SSIM**: ``skimage.metrics.structural_similarity`` on the whole volumes (not slice by
  slice) with a uniform ``w x w x w`` window, ``K1 = 0.01``, ``K2 = 0.03``, the sample
  covariance (``use_sample_covariance=True``, scikit-image's defaults), ``data_range=L`` and
  ``full=True``; the result is the mean of the SSIM map over the brain voxels (voxels
  outside the brain, where both images are 0, are not averaged). ``w`` is
  :data:`SSIM_WINDOW` (7), or the largest odd size that fits the volume's shortest axis
  (5 or 3 for a stack of few slices). Axes of fewer than 3 voxels (a single slice, a 2D
  input stored as a 1-slice volume) are not windowed: the SSIM is computed on each slice
  across them (in 2D) and the maps are pooled. Near the grid's faces the window is
  mirrored (scipy's ``reflect`` mode, scikit-image's behaviour).
  For speed the volumes are cropped to the brain's bounding box plus the window's radius
  (at least one window wide) before filtering; this gives exactly the full-volume map on
  every brain voxel (each brain voxel's window lies inside the crop, or is mirrored at the
  same grid face).
* An empty mask, or a real image that is constant inside the brain (``L = 0``), is an
  :class:`~tumorseg.errors.InputError`.
"""

from __future__ import annotations

import itertools

import numpy as np
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from tumorseg.errors import InputError

#: SSIM window side (voxels) when the volume is large enough
SSIM_WINDOW = 7
#: the scikit-image / Wang et al. constants
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: metric names, in output order
IMAGE_METRICS = ("mae", "mse", "psnr", "ssim")
#: axes shorter than this are not windowed (SSIM per slice across them)
MIN_WINDOWED_AXIS = 3


def ssim_window(shape) -> int:
    """The SSIM window side for an array of ``shape``: :data:`SSIM_WINDOW`, or the largest
    odd size that fits the shortest axis of at least :data:`MIN_WINDOWED_AXIS` voxels."""
    sides = [int(n) for n in shape if int(n) >= MIN_WINDOWED_AXIS]
    if not sides:
        raise InputError(f"an image of shape {tuple(shape)} is too small for SSIM")
    shortest = min(min(sides), SSIM_WINDOW)
    return shortest if shortest % 2 else shortest - 1


def real_data_range(real: np.ndarray, mask: np.ndarray) -> float:
    """``max - min`` of the real image inside the brain."""
    values = np.asarray(real)[np.asarray(mask, dtype=bool)]
    if values.size == 0:
        raise InputError("the brain mask is empty: nothing to score")
    return float(values.max()) - float(values.min())


def _crop(mask: np.ndarray, margin: int, width: int) -> tuple[slice, ...]:
    """The mask's bounding box widened by ``margin`` and to at least ``width`` voxels on
    every axis that long (clipped to the grid)."""
    box = []
    for axis in range(mask.ndim):
        n = mask.shape[axis]
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        lo, hi = max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, n)
        if hi - lo < width:
            hi = min(lo + width, n)
            lo = max(hi - width, 0)
        box.append(slice(lo, hi))
    return tuple(box)


def masked_ssim(pred: np.ndarray, real: np.ndarray, mask: np.ndarray, data_range: float):
    """Mean SSIM over the brain voxels (see the module docstring); images are 0 outside."""
    win = ssim_window(mask.shape)
    box = _crop(mask, win // 2, win)
    pred, real, mask = pred[box], real[box], mask[box]
    thin = [a for a in range(mask.ndim) if mask.shape[a] < MIN_WINDOWED_AXIS]
    total, count = 0.0, 0
    for index in itertools.product(*(range(mask.shape[a]) for a in thin)):
        sel = [slice(None)] * mask.ndim
        for axis, i in zip(thin, index, strict=True):
            sel[axis] = i
        sel = tuple(sel)
        brain = mask[sel]
        if not brain.any():
            continue
        _, smap = structural_similarity(
            real[sel],
            pred[sel],
            win_size=win,
            data_range=data_range,
            K1=SSIM_K1,
            K2=SSIM_K2,
            use_sample_covariance=True,
            gaussian_weights=False,
            full=True,
        )
        total += float(smap[brain].sum(dtype=np.float64))
        count += int(brain.sum())
    return total / count


def _check(pred, real, mask):
    pred = np.asarray(pred, dtype=np.float64)
    real = np.asarray(real, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if not (pred.shape == real.shape == mask.shape):
        raise InputError(
            f"shapes differ: prediction {pred.shape}, real image {real.shape}, mask {mask.shape}"
        )
    if not mask.any():
        raise InputError("the brain mask is empty: nothing to score")
    for name, arr in (("prediction", pred), ("real image", real)):
        n_bad = int(np.count_nonzero(~np.isfinite(arr[mask])))
        if n_bad:
            raise InputError(f"the {name} has {n_bad} NaN or infinite voxels inside the brain")
    return np.where(mask, pred, 0.0), np.where(mask, real, 0.0), mask


def image_metrics(pred, real, mask, data_range: float | None = None) -> dict[str, float]:
    """MAE, MSE, PSNR (dB) and SSIM of ``pred`` against ``real`` inside the brain ``mask``.

    ``data_range`` defaults to the real image's range inside the brain; see the module
    docstring for every definition. Returns ``{"mae", "mse", "psnr", "ssim"}`` as floats.
    """
    pred, real, mask = _check(pred, real, mask)
    if data_range is None:
        data_range = real_data_range(real, mask)
    data_range = float(data_range)
    if not (np.isfinite(data_range) and data_range > 0):
        raise InputError(
            f"the data range must be positive (got {data_range:g}); the real image is "
            "constant inside the brain"
        )
    p, r = pred[mask], real[mask]
    mse = float(mean_squared_error(r, p))
    if mse == 0:
        psnr = float("inf")
    else:
        psnr = float(peak_signal_noise_ratio(r, p, data_range=data_range))
    return {
        "mae": float(np.mean(np.abs(p - r))),
        "mse": mse,
        "psnr": psnr,
        "ssim": masked_ssim(pred, real, mask, data_range),
    }
