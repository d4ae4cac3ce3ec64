"""Post-processing chosen on validation, as nnU-Net chooses it on its cross-validation
predictions (``determine_postprocessing``): each candidate is tried on the validation cases
(out of fold for a fold ensemble) and kept only where it raises validation Dice.

The candidates are tried in a fixed order, each on top of those kept before it:

1. the foreground's largest component;
2. per region (label map order): its largest component, or removing its components below
   each of ``min_volumes`` mm³ (the best of these);
3. per region: removing the whole region below each of ``relabel_volumes`` mm³ (the best;
   for BraTS ET: a small enhancing tumour relabelled as necrosis).

A group's best candidate is kept only if it raises the mean validation Dice of its region
(of every region for the foreground) and lowers no region's. So the kept steps never lower
any region's validation Dice, and they are judged on the cases they were chosen on.
"""

from __future__ import annotations

import logging

import numpy as np

from tumorseg.evaluation.segmentation import bounding_box, dice
from tumorseg.postprocessing.operations import FOREGROUND, apply_step
from tumorseg.tasks.labels import LabelMap

log = logging.getLogger(__name__)


def crop_case(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The box of both label maps' foreground (every step changes only predicted voxels, and
    Dice counts only foreground): the same Dice and components on far fewer voxels."""
    box = bounding_box((pred > 0) | (ref > 0), margin=1)
    if box is None:
        return pred[:1, :1, :1], ref[:1, :1, :1]
    return pred[box], ref[box]


def mean_dice(preds: list[np.ndarray], refs: list[np.ndarray], labels: LabelMap) -> dict:
    """Mean Dice over the cases, per region (label map order)."""
    return {
        region: float(
            np.mean([dice(np.isin(p, c), np.isin(r, c)) for p, r in zip(preds, refs, strict=True)])
        )
        for region, c in labels.regions.items()
    }


def candidate_groups(labels: LabelMap, min_volumes, relabel_volumes) -> list[list[dict]]:
    """The candidates, in groups tried one after another (module docstring)."""
    groups = [[{"region": FOREGROUND, "operation": "largest"}]]
    for region in labels.regions:
        groups.append(
            [
                {"region": region, "operation": "largest"},
                *({"region": region, "operation": "min_volume", "value": v} for v in min_volumes),
            ]
        )
    for region in labels.regions:
        groups.append(
            [
                {"region": region, "operation": "to_parent_below", "value": v}
                for v in relabel_volumes
            ]
        )
    return [g for g in groups if g]


def _gain(step: dict, before: dict, after: dict) -> float:
    """How much a step raised what it is judged on; -inf where it lowered any region."""
    if any(after[r] < before[r] - 1e-12 for r in before):
        return -np.inf
    if step["region"] == FOREGROUND:
        return float(np.mean(list(after.values())) - np.mean(list(before.values())))
    return after[step["region"]] - before[step["region"]]


def choose(
    cases: list[tuple[np.ndarray, np.ndarray, float]],
    labels: LabelMap,
    min_volumes=(),
    relabel_volumes=(),
) -> dict:
    """Choose the post-processing on validation ``cases`` (``(pred, ref, voxel_mm3)``, class
    maps). Returns ``steps`` (the kept ones, in order), ``tried`` (every candidate with its
    mean Dice per region and whether it was kept), and the mean Dice per region ``raw``
    and ``postprocessed``."""
    preds = [p for p, _, _ in cases]
    refs = [r for _, r, _ in cases]
    volumes = [v for _, _, v in cases]
    raw = current = mean_dice(preds, refs, labels)
    steps, tried = [], []
    for group in candidate_groups(labels, min_volumes, relabel_volumes):
        results = []
        for step in group:
            applied = [apply_step(p, step, labels, v) for p, v in zip(preds, volumes, strict=True)]
            scores = mean_dice(applied, refs, labels)
            results.append((_gain(step, current, scores), step, scores, applied))
            tried.append({**step, "dice": scores, "kept": False})
        best = max(range(len(results)), key=lambda i: results[i][0])  # ties: the first
        gain, step, scores, applied = results[best]
        if gain > 1e-12:
            steps.append(step)
            tried[len(tried) - len(group) + best]["kept"] = True
            log.info("kept %s: validation Dice %s -> %s", step, current, scores)
            preds, current = applied, scores
    return {
        "n_cases": len(cases),
        "steps": steps,
        "tried": tried,
        "raw": raw,
        "postprocessed": current,
    }
