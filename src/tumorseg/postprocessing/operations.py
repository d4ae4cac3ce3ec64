"""Post-processing operations on a case's class map (pure: arrays in, arrays out).

A *step* is a dict ``{"region", "operation", "value"}``. ``region`` is one of the label map's
regions or ``foreground`` (every class but background). The operations, as nnU-Net's
post-processing and the BraTS winners' habit:

* ``largest``: keep only the region's largest connected component;
* ``min_volume``: remove the region's connected components smaller than ``value`` mm³;
* ``to_parent_below``: remove the whole region where its total volume is below ``value``
  mm³ (for the BraTS enhancing tumour: a small predicted ET becomes necrosis, since an
  empty ET reference scores 1 only against an empty prediction).

Components are 26-connected in 3D (full connectivity, as the lesion counts and the BraTS
lesion-wise evaluation take them). Voxels removed from a region become its *parent* class:
the one class of the smallest region that strictly contains it and is not in it (a removed
BraTS ET voxel becomes necrosis, as ET ⊂ TC = {necrosis, ET}; a removed TC voxel becomes
edema, as TC ⊂ WT), or background where there is none. Only voxels of the region change.
"""

from __future__ import annotations

import numpy as np

from tumorseg.evaluation.segmentation import bounding_box
from tumorseg.tasks.labels import LabelMap

#: the pseudo-region of every non-background class
FOREGROUND = "foreground"
OPERATIONS = ("largest", "min_volume", "to_parent_below")


def region_classes(labels: LabelMap, region: str) -> tuple[int, ...]:
    if region == FOREGROUND:
        return tuple(range(1, labels.n_classes))
    return labels.regions[region]


def parent_class(labels: LabelMap, region: str) -> int:
    """The class that voxels removed from ``region`` become (module docstring)."""
    own = set(region_classes(labels, region))
    enclosing = [set(c) for c in labels.regions.values() if own < set(c)]
    if not enclosing:
        return 0
    rest = min(enclosing, key=len) - own
    return rest.pop() if len(rest) == 1 else 0


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Component labels of a boolean mask (26-connected in 3D) and each one's voxel count
    (index 0: background)."""
    from skimage.measure import label

    labelled = label(mask, connectivity=mask.ndim)
    return labelled, np.bincount(labelled.ravel())


def kept_voxels(mask: np.ndarray, operation: str, value: float, voxel_mm3: float):
    """The voxels of ``mask`` that ``operation`` keeps (a boolean array like ``mask``)."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown post-processing operation {operation!r}; one of {OPERATIONS}")
    box = bounding_box(mask)
    if box is None:
        return mask.copy()
    if operation == "to_parent_below":
        return mask.copy() if mask.sum() * voxel_mm3 >= value else np.zeros_like(mask)
    labelled, sizes = _components(mask[box])
    sizes[0] = 0
    if operation == "largest":
        keep = sizes == sizes.max()
        keep[np.flatnonzero(keep)[1:]] = False  # one component on a tie: the first found
    else:
        keep = sizes * voxel_mm3 >= value
    keep[0] = False
    out = np.zeros_like(mask)
    out[box] = keep[labelled]
    return out


def apply_step(classes: np.ndarray, step: dict, labels: LabelMap, voxel_mm3: float):
    """``classes`` after one step (a new array; module docstring)."""
    mask = np.isin(classes, region_classes(labels, step["region"]))
    removed = mask & ~kept_voxels(mask, step["operation"], float(step.get("value", 0)), voxel_mm3)
    out = classes.copy()
    out[removed] = parent_class(labels, step["region"])
    return out


def apply_steps(classes: np.ndarray, steps: list[dict], labels: LabelMap, voxel_mm3: float):
    for step in steps:
        classes = apply_step(classes, step, labels, voxel_mm3)
    return classes
