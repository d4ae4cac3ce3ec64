"""Label conventions and tumour regions.

Internally every label map uses four classes: 0 background, 1 necrotic / non-enhancing
core (NCR), 2 peritumoral edema (ED), 3 enhancing tumour (ET). Datasets store them with
their own values, mapped here in both directions.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

N_CLASSES = 4
CLASS_NAMES = ("background", "necrotic", "edema", "enhancing")

#: dataset value -> internal class, per convention
CONVENTIONS: dict[str, dict[int, int]] = {
    "brats2017": {0: 0, 1: 1, 2: 2, 4: 3},
    "brats2023": {0: 0, 1: 1, 2: 2, 3: 3},
    "decathlon": {0: 0, 1: 2, 2: 1, 3: 3},
}

#: BraTS evaluation regions, as sets of internal classes
REGIONS: dict[str, tuple[int, ...]] = {
    "WT": (1, 2, 3),
    "TC": (1, 3),
    "ET": (3,),
}

#: value written for "unknown" in the internal label array of an unlabelled case
UNLABELLED = 255


def _lookup(convention: str) -> dict[int, int]:
    try:
        return CONVENTIONS[convention]
    except KeyError:
        raise InputError(
            f"unknown label convention {convention!r}; choose one of {sorted(CONVENTIONS)}"
        ) from None


def to_internal(values: np.ndarray, convention: str, case=None, path=None) -> np.ndarray:
    """Map dataset label values to internal classes (uint8); unknown values are an error."""
    mapping = _lookup(convention)
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise InputError("label has NaN or infinite voxels", case, path)
        if not np.all(arr == np.round(arr)):
            raise InputError("label has non-integer values", case, path)
    if arr.dtype.kind in "ui" and arr.dtype.itemsize <= 2:
        # one gather through a lookup table; unknown values map to a sentinel
        lo = int(np.iinfo(arr.dtype).min)
        lut = np.full(int(np.iinfo(arr.dtype).max) - lo + 1, UNLABELLED, dtype=np.uint8)
        for value, cls in mapping.items():
            if np.iinfo(arr.dtype).min <= value <= np.iinfo(arr.dtype).max:
                lut[value - lo] = cls
        out = lut[arr.astype(np.intp) - lo] if lo else lut[arr]
        if out.max() != UNLABELLED:
            return out
        found = np.unique(arr[out == UNLABELLED])
    else:
        arr = arr.astype(np.int64, copy=False)
        found = np.unique(arr)
    bad = [int(v) for v in found if int(v) not in mapping]
    if bad:
        raise InputError(
            f"label values {bad} are outside the {convention} convention "
            f"(allowed: {sorted(mapping)})",
            case,
            path,
        )
    lut = np.zeros(max(mapping) + 1, dtype=np.uint8)
    for value, cls in mapping.items():
        lut[value] = cls
    return lut[arr]


def from_internal(classes: np.ndarray, convention: str) -> np.ndarray:
    """Map internal classes back to the dataset's label values (uint8)."""
    mapping = _lookup(convention)
    lut = np.zeros(N_CLASSES, dtype=np.uint8)
    for value, cls in mapping.items():
        lut[cls] = value
    return lut[np.asarray(classes)]


def region_mask(classes: np.ndarray, region: str) -> np.ndarray:
    """Boolean mask of a BraTS region (WT, TC, ET) in an internal class map."""
    return np.isin(classes, REGIONS[region])
