"""BraTS lesion-wise metrics, as the official BraTS evaluation computes them (pure).

The BraTS challenges have ranked by lesion-wise Dice and HD95 since 2023. The organisers
publish the evaluation as the ``brats-evaluation`` package: panoptica run with the package's
per-challenge config, then its ``brats-parse-metrics``. It pins numpy < 2.3 and pandas < 3,
so it cannot join this workflow's stack; these functions compute the same figures, and
``tests/test_lesions.py`` checks them against the package itself on constructed cases.

Per region of a BraTS label map (WT, TC, ET are the package's ``wt``, ``tc`` and ``et``
groups):

* Lesions are the connected components of the region's mask: 26-connected in 3D (cc3d's
  default, which panoptica uses), 4-connected in 2D (scipy's default, likewise).
* Reference and predicted lesions are matched one to one by maximum bipartite matching on
  their Dice: ``scipy.optimize.linear_sum_assignment`` on ``1 - Dice``; a pair must overlap
  (Dice above 1e-6), as in the package's ``MaxBipartiteMatching``.
* A matched pair (a true positive) is scored by its Dice and its pooled HD95
  (:func:`tumorseg.evaluation.segmentation.hd95_pooled`, the two lesions alone). Unmatched
  reference lesions are false negatives, unmatched predicted ones false positives.

What a challenge reports from those (``evaluation.lesion_wise`` in the config):

* ``gli`` (glioma; the package's "seg" parser, also used for GoAT and the pre-operative
  meningioma): ``lesion_dice`` and ``lesion_hd95`` are the means over the matched pairs.
  Without a matched pair they are 0 and :data:`LESION_HD95_MISSED` when either side has a
  lesion, and empty (NaN, left out of every mean) when neither has one.
* ``mets`` (metastases; the package's "mets" parser): only reference lesions of at least
  :data:`METS_MIN_VOLUME` mm^3 count; each of them scores its match's Dice and HD95 or, if
  missed, 0 and :data:`LESION_HD95_MISSED`; every false positive adds a 0 and a
  :data:`LESION_HD95_MISSED`; the means are over all of those. Without a reference lesion
  of that size they are empty.

``lesion_tp``, ``lesion_fp``, ``lesion_fn`` count all lesions and ``lesion_f1`` is the
package's recognition quality ``TP / (TP + (FP + FN) / 2)`` (empty when neither side has a
lesion).

Two deliberate differences, both documented where they show: where the package gives an
infinite HD95 (a region with lesions but no matched pair under ``gli``) its parser passes the
infinity on; here it is the 373 mm penalty the same parser writes for the global HD95, so
that means stay finite. And distances are in mm on every grid (the package passes the
image's spacing to the lesion HD95s); on BraTS's 1-mm grid the two are the same.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from tumorseg.evaluation.segmentation import bounding_box, hd95_pooled
from tumorseg.tasks.labels import as_label_map

#: HD95 (mm) of a missed or false-positive lesion: the official parser's penalty (the
#: diagonal of the BraTS grid, rounded down as the package does)
LESION_HD95_MISSED = 373.0
#: ``mets``: reference lesions smaller than this (mm^3) are left out of the lesion-wise means
METS_MIN_VOLUME = 20.0
#: challenges whose official parameters this module knows
CHALLENGES = ("gli", "mets")
#: per-region columns, in output order
LESION_COLUMNS = (
    "lesion_dice",
    "lesion_hd95",
    "lesion_tp",
    "lesion_fp",
    "lesion_fn",
    "lesion_f1",
)
#: a pair must overlap with at least this Dice to be matched (the package's threshold)
_MATCH_THRESHOLD = 1e-6


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    structure = np.ones((3,) * mask.ndim, bool) if mask.ndim >= 3 else None
    labels, n = ndimage.label(mask, structure=structure)
    return labels, int(n)


def _pair_dice(ref_labels, n_ref, pred_labels, n_pred) -> np.ndarray:
    """Dice of every (reference lesion, predicted lesion) pair, ``(n_ref, n_pred)``; 0 for
    pairs that do not overlap."""
    both = (ref_labels > 0) & (pred_labels > 0)
    pairs = ref_labels[both].astype(np.int64) * (n_pred + 1) + pred_labels[both]
    counts = np.bincount(pairs, minlength=(n_ref + 1) * (n_pred + 1))
    overlap = counts.reshape(n_ref + 1, n_pred + 1)[1:, 1:].astype(float)
    ref_size = np.bincount(ref_labels.ravel(), minlength=n_ref + 1)[1:].astype(float)
    pred_size = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)[1:].astype(float)
    return 2.0 * overlap / (ref_size[:, None] + pred_size[None, :])


def match_lesions(ref_labels, n_ref, pred_labels, n_pred) -> list[tuple[int, int, float]]:
    """Matched ``(reference label, predicted label, Dice)`` triples, by maximum bipartite
    matching on Dice among overlapping pairs."""
    from scipy.optimize import linear_sum_assignment

    if n_ref == 0 or n_pred == 0:
        return []
    dice = _pair_dice(ref_labels, n_ref, pred_labels, n_pred)
    cost = np.where(dice > _MATCH_THRESHOLD, 1.0 - dice, 1.0 + 1e-6)
    rows, cols = linear_sum_assignment(cost)
    pairs = zip(rows, cols, strict=True)
    return [(r + 1, c + 1, float(dice[r, c])) for r, c in pairs if cost[r, c] < 1.0]


def _pair_hd95s(ref_labels, pred_labels, matches, spacing) -> dict[int, float]:
    """Pooled HD95 of every matched pair, each compared inside the two lesions' joint
    bounding box plus one voxel (where all of both surfaces lie), not over the region."""
    ref_boxes, pred_boxes = ndimage.find_objects(ref_labels), ndimage.find_objects(pred_labels)
    out = {}
    for r, p, _ in matches:
        a, b = ref_boxes[r - 1], pred_boxes[p - 1]
        box = tuple(
            slice(max(min(x.start, y.start) - 1, 0), min(max(x.stop, y.stop) + 1, n))
            for x, y, n in zip(a, b, ref_labels.shape, strict=True)
        )
        out[r] = hd95_pooled(pred_labels[box] == p, ref_labels[box] == r, spacing)
    return out


def _mean_or(values: list[float], empty: float) -> float:
    return float(np.mean(values)) if values else empty


def lesion_metrics(pred: np.ndarray, ref: np.ndarray, spacing, challenge: str = "gli") -> dict:
    """The lesion-wise columns (:data:`LESION_COLUMNS`) of one region's boolean masks under
    ``challenge``'s parameters; ``spacing`` in array-axis order (mm)."""
    if challenge not in CHALLENGES:
        raise ValueError(f"unknown BraTS challenge {challenge!r}; known: {CHALLENGES}")
    ref_labels, n_ref = _components(np.asarray(ref, bool))
    pred_labels, n_pred = _components(np.asarray(pred, bool))
    matches = match_lesions(ref_labels, n_ref, pred_labels, n_pred)
    tp = len(matches)
    fp, fn = n_pred - tp, n_ref - tp
    none = n_ref + n_pred == 0
    hd95s = _pair_hd95s(ref_labels, pred_labels, matches, spacing)
    scores = {r: (d, hd95s[r]) for r, _, d in matches}
    if challenge == "gli":
        dice = _mean_or([d for d, _ in scores.values()], np.nan if none else 0.0)
        hd = _mean_or([h for _, h in scores.values()], np.nan if none else LESION_HD95_MISSED)
    else:
        voxel_volume = float(np.prod(spacing))
        sizes = np.bincount(ref_labels.ravel(), minlength=n_ref + 1)[1:] * voxel_volume
        large = [r for r in range(1, n_ref + 1) if sizes[r - 1] >= METS_MIN_VOLUME]
        missed = (0.0, LESION_HD95_MISSED)
        listed = [scores.get(r, missed) for r in large] + [missed] * fp
        dice = _mean_or([d for d, _ in listed], np.nan) if large else np.nan
        hd = _mean_or([h for _, h in listed], np.nan) if large else np.nan
    f1 = np.nan if none else tp / (tp + 0.5 * fp + 0.5 * fn)
    return {
        "lesion_dice": dice,
        "lesion_hd95": hd,
        "lesion_tp": tp,
        "lesion_fp": fp,
        "lesion_fn": fn,
        "lesion_f1": float(f1),
    }


def lesion_table(pred_classes, ref_classes, spacing, labels, challenge: str) -> pd.DataFrame:
    """One row per region of a BraTS label map: ``region`` and :data:`LESION_COLUMNS`.
    Both maps hold internal classes in ``(z, y, x)`` order; ``spacing`` in the same order."""
    # lesions, matches and distances lie in the bounding box of both maps' foreground
    box = bounding_box((pred_classes != 0) | (ref_classes != 0), margin=1)
    if box is not None:
        pred_classes, ref_classes = pred_classes[box], ref_classes[box]
    rows = []
    for region, classes in as_label_map(labels).regions.items():
        pred, ref = np.isin(pred_classes, classes), np.isin(ref_classes, classes)
        rows.append({"region": region, **lesion_metrics(pred, ref, spacing, challenge)})
    return pd.DataFrame(rows, columns=["region", *LESION_COLUMNS])
