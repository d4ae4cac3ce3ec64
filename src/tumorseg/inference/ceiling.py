"""The resolution ceiling: the reference (or real target) after preprocessing, sent back
to native space like a prediction, so that the loss of the model's grid is measured."""

from __future__ import annotations

import numpy as np

from tumorseg.batches import for_each_case
from tumorseg.errors import InputError
from tumorseg.inference.export import (
    native_brain,
    native_reference,
    to_native_intensity,
    write_intensity,
    write_segmentation,
)
from tumorseg.io.grid import load_geometry
from tumorseg.preprocessing import geometry as geo
from tumorseg.tasks.labels import as_label_map
from tumorseg.threads import hold_itk


def ceiling_case(
    case: str, label_npy: str, geometry_json: str, reference: str, labels, out_seg: str
) -> None:
    """The reference label after downsampling, sent back through the same inversion.
    Always written as NIfTI (for a slice stack: on its stack grid)."""
    labels = as_label_map(labels)
    record = load_geometry(geometry_json)
    if not record["has_label"]:
        raise InputError("the case has no label, so it has no resolution ceiling", case)
    native_reference(reference, case, record)
    label = np.load(label_npy, allow_pickle=False)
    classes = geo.labels_to_native(label, record, labels.n_classes)
    write_segmentation(classes, reference, case, labels, out_seg, slice_files=False)


def ceiling_batch(cases: list[dict], labels, threads: int = 1, case_logs=None) -> None:
    """:func:`ceiling_case` for a batch of cases (dicts of its arguments) in one process."""
    hold_itk(max(1, int(threads)))
    for_each_case(cases, ceiling_case, case_logs, labels=labels)


def translation_ceiling_case(
    case: str,
    target_npy: str,
    geometry_json: str,
    inputs: list[str],
    out_path: str,
    mask_path: str | None = None,
    brain_threshold: float = 0.01,
) -> None:
    """The real target after preprocessing, sent back to native space like a prediction."""
    record = load_geometry(geometry_json)
    if not record.get("has_target"):
        raise InputError("the case has no target, so it has no resolution ceiling", case)
    native_reference(inputs[0], case, record)
    brain = native_brain(case, inputs, record, mask_path, brain_threshold)
    target = np.load(target_npy, allow_pickle=False)
    write_intensity(to_native_intensity(target, record, brain), inputs[0], case, out_path)


def translation_ceiling_batch(
    cases: list[dict], brain_threshold: float = 0.01, threads: int = 1, case_logs=None
) -> None:
    """:func:`translation_ceiling_case` for a batch of cases in one process."""
    hold_itk(max(1, int(threads)))
    for_each_case(cases, translation_ceiling_case, case_logs, brain_threshold=brain_threshold)
