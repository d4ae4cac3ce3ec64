"""One case scored on its native grid: the reference, the prediction and the resolution
ceiling read through the checked readers, checked to share one grid, turned into the label
map's classes, measured (:mod:`tumorseg.evaluation.segmentation`) and written as a TSV."""

from __future__ import annotations

import logging

import numpy as np

from tumorseg.errors import InputError
from tumorseg.evaluation.lesions import lesion_table
from tumorseg.evaluation.segmentation import CASE_COLUMNS, case_metrics, slice_dice
from tumorseg.io.tables import write_tsv
from tumorseg.tasks.labels import as_label_map

log = logging.getLogger(__name__)


def read_label(path: str, labels, case: str, role: str):
    """A label image (file or slice-stack folder) through the checked readers, and its
    values as the label map's classes."""
    import SimpleITK as sitk

    from tumorseg.io.images import read_image
    from tumorseg.io.slices import is_stack, read_stack_masks

    image = read_stack_masks(path, case) if is_stack(path) else read_image(path, case, role)
    classes = as_label_map(labels).to_internal(sitk.GetArrayViewFromImage(image), case, path)
    return image, classes


def check_same_grid(case: str, path_a: str, image_a, path_b: str, image_b) -> None:
    from tumorseg.io.grid import Grid, grid_differences

    problems = grid_differences(Grid.from_image(image_a), Grid.from_image(image_b))
    if problems:
        raise InputError(
            f"{path_a} and {path_b} are not on the same grid ({'; '.join(problems)}); "
            "predictions must be written on the reference's native grid",
            case,
        )


def evaluate_case(
    case: str,
    pred_path: str,
    ref_path: str,
    ceiling_path: str | None,
    labels,
    out_path: str,
    slice_metrics: bool = False,
    lesion_wise: str = "none",
) -> None:
    """Score one case's prediction against its reference on the native grid; write a TSV.

    Label files are any SimpleITK-readable format (or slice-stack folders) holding the
    values of the dataset's label map ``labels``. With ``slice_metrics`` a ``slice_dice``
    column (mean per-slice Dice, see :func:`slice_dice`) follows the others. With
    ``ceiling_path`` (the reference sent through the model resolution and back),
    ``ceiling_dice`` and ``ceiling_hd95`` compare it with the reference; without
    it those columns are empty. For a BraTS label map, ``lesion_wise`` names the BraTS
    sub-challenge whose lesion-wise metrics (:mod:`tumorseg.evaluation.lesions`) follow as
    the ``lesion_*`` columns; ``"none"`` leaves them out. Columns: :data:`CASE_COLUMNS`, then
    those, one row per region.
    """
    labels = as_label_map(labels)
    ref_image, ref = read_label(ref_path, labels, case, "reference")
    pred_image, pred = read_label(pred_path, labels, case, "prediction")
    check_same_grid(case, pred_path, pred_image, ref_path, ref_image)
    spacing = tuple(reversed(ref_image.GetSpacing()))  # (x, y, z) -> array order (z, y, x)
    table = case_metrics(pred, ref, spacing, labels)
    if ceiling_path:
        ceiling_image, ceiling = read_label(ceiling_path, labels, case, "ceiling")
        check_same_grid(case, ceiling_path, ceiling_image, ref_path, ref_image)
        ceil = case_metrics(ceiling, ref, spacing, labels, directed=False)  # keeps Dice, pooled
        table["ceiling_dice"] = ceil["dice"].to_numpy()
        table["ceiling_hd95"] = ceil["hd95_pooled"].to_numpy()
    else:
        table["ceiling_dice"] = np.nan
        table["ceiling_hd95"] = np.nan
    table.insert(0, "case", case)
    table = table[list(CASE_COLUMNS)]
    if slice_metrics:
        table["slice_dice"] = table["region"].map(slice_dice(pred, ref, labels))
    if lesion_wise != "none" and labels.brats:
        lesions = lesion_table(pred, ref, spacing, labels, lesion_wise)
        table = table.merge(lesions, on="region", how="left", validate="one_to_one")
    for row in table.itertuples(index=False):
        log.info(
            "case %s %s: Dice %.4f, HD95 %.2f mm pooled, %.2f mm directed (ceiling Dice %s)",
            case,
            row.region,
            row.dice,
            row.hd95_pooled,
            row.hd95_directed,
            "n/a" if np.isnan(row.ceiling_dice) else f"{row.ceiling_dice:.4f}",
        )
    write_tsv(table, out_path)


def evaluate_batch(
    cases: list[dict], labels, slice_metrics=False, lesion_wise="none", case_logs=None
) -> None:
    """:func:`evaluate_case` for a batch of cases (dicts of its arguments) in one process."""
    from tumorseg.batches import for_each_case

    for_each_case(
        cases,
        evaluate_case,
        case_logs,
        labels=labels,
        slice_metrics=slice_metrics,
        lesion_wise=lesion_wise,
    )
