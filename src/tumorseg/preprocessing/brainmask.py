"""Brain masks of a case's modalities: the percentile threshold for raw MRI, "non-zero in
any modality" for already-normalised volumes, chosen automatically (``auto``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np


def modality_mask(arr: np.ndarray, threshold: float) -> np.ndarray:
    """Voxels above ``threshold`` x the 99th percentile of the positive voxels."""
    flat = arr.ravel()
    sample = flat[:: max(1, flat.size // 2_000_000)]
    pos = sample[sample > 0]
    if pos.size == 0:
        return np.zeros(arr.shape, dtype=bool)
    k = int(0.99 * (pos.size - 1))
    cut = threshold * float(np.partition(pos, k)[k])
    if arr.dtype.kind in "ui":  # x > t  <=>  x > floor(t): compare in the image's own type
        return arr > arr.dtype.type(min(np.floor(cut), np.iinfo(arr.dtype).max))
    return arr > arr.dtype.type(cut)


def brain_mask(arrays: list[np.ndarray], threshold: float, threads: int = 1) -> np.ndarray:
    """Brain = voxels inside :func:`modality_mask` of any modality (robust to a background
    that is not exactly 0, and to dark tissue in one modality)."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        masks = list(pool.map(lambda a: modality_mask(a, threshold), arrays))
    out = masks[0]
    for m in masks[1:]:
        np.logical_or(out, m, out=out)
    return out


#: share of negative voxels among the non-zero ones above which data counts as normalised
NORMALISED_NEGATIVE_SHARE = 0.05


def choose_mask_mode(arrays: list[np.ndarray], mode: str) -> str:
    """``auto`` -> ``nonzero`` for already-normalised data (at least 5 % of the non-zero
    voxels of some modality negative, as in z-scored volumes, and an exactly-zero
    background: every voxel on the volume's faces is 0 in every modality), else
    ``threshold``. Raw MRI (non-negative, or a few negative noise voxels) takes the
    threshold, as before."""
    if mode != "auto":
        return mode
    if not all(_faces_are_zero(a) for a in arrays):
        return "threshold"
    for arr in arrays:
        if arr.dtype.kind not in "if":
            continue
        sample = arr.ravel()[:: max(1, arr.size // 2_000_000)]
        nonzero = np.count_nonzero(sample)
        if nonzero and np.count_nonzero(sample < 0) >= NORMALISED_NEGATIVE_SHARE * nonzero:
            return "nonzero"
    return "threshold"


def _faces_are_zero(arr: np.ndarray) -> bool:
    faces = (arr[0], arr[-1], arr[:, 0], arr[:, -1], arr[:, :, 0], arr[:, :, -1])
    return all(not np.any(f) for f in faces)


def mask_of(arrays: list[np.ndarray], mode: str, threshold: float, threads: int = 1):
    """The brain mask of ``arrays`` for ``mode`` (auto, nonzero or threshold), and the mode
    used."""
    mode = choose_mask_mode(arrays, mode)
    if mode == "nonzero":
        mask = np.zeros(arrays[0].shape, dtype=bool)
        for arr in arrays:
            mask |= arr != 0
        return mask, mode
    return brain_mask(arrays, threshold, threads), mode
