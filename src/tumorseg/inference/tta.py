"""Test-time augmentation by mirroring, and the uncertainty of averaged probabilities (pure).

``predict.tta: mirror`` averages a model's class probabilities over its input and the input's
mirror images along the axes its training augmentation flipped, as nnU-Net does at test time
(``use_mirroring``). Both the 2D U-Net (slices ``(b, y, x, C)``) and the 3D U-Net (windows
``(b, z, y, x, C)``) are trained with left-right flips of the x axis only (``augment.flip``),
the second-to-last axis of a batch in both, so that is the axis mirrored: two forward passes
a batch. Every subset of the mirrored axes is one pass (nnU-Net's habit), each flipped back
before averaging.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

import numpy as np

#: ``predict.tta`` values
TTA_MODES = ("none", "mirror")
#: the batch axis that training's flip mirrors (x, second-to-last of (b, ..., x, C))
FLIPPED_AXIS = -2


def mirror_axes(tta: str, augment: dict) -> tuple[int, ...]:
    """The batch axes to mirror for a model trained with ``augment`` (its settings):
    the x axis where ``tta`` is ``mirror`` and training flipped it, else none."""
    if tta not in TTA_MODES:
        raise ValueError(f"predict.tta must be one of {TTA_MODES}, not {tta!r}")
    return (FLIPPED_AXIS,) if tta == "mirror" and augment.get("flip", True) else ()


def mirrored(call: Callable[[np.ndarray], np.ndarray], axes) -> Callable:
    """``call`` (a batch to its probabilities, same spatial axes) averaged over the batch and
    its mirror images along every non-empty subset of ``axes``, each flipped back."""
    axes = tuple(axes)
    if not axes:
        return call
    subsets = [c for n in range(1, len(axes) + 1) for c in combinations(axes, n)]

    def averaged(batch: np.ndarray) -> np.ndarray:
        total = np.asarray(call(batch), dtype=np.float32).copy()
        for flip in subsets:
            out = np.asarray(call(np.ascontiguousarray(np.flip(batch, flip))), np.float32)
            total += np.flip(out, flip)
        return total / (len(subsets) + 1)

    return averaged


def entropy(probs: np.ndarray) -> np.ndarray:
    """Voxel-wise Shannon entropy (nats) of class probabilities on the last axis, float32:
    0 where one class has all the probability, ``ln C`` where all ``C`` classes are equal."""
    p = np.asarray(probs, dtype=np.float32)
    log_p = np.log(np.where(p > 0, p, np.float32(1)))  # 0 * log 0 counts as 0
    return -(p * log_p).sum(axis=-1, dtype=np.float32)


def region_entropy(probs: np.ndarray) -> np.ndarray:
    """The uncertainty of a region model (one sigmoid per region on the last axis): the sum
    over regions of each one's binary entropy (nats; :func:`entropy` of ``(p, 1 - p)``),
    float32: 0 where every region is certain, ``R ln 2`` where all ``R`` are at 0.5."""
    p = np.clip(np.asarray(probs, dtype=np.float32), 0, 1)
    return entropy(np.stack([p, 1 - p], axis=-1)).sum(axis=-1, dtype=np.float32)
