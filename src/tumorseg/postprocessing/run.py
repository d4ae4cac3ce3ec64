"""Post-processing for one run's files: chosen on its validation predictions
(``results/postprocessing/<run>.json``), then applied case by case to its raw predictions,
written beside them as the run ``<run>.pp`` on each input's native grid."""

from __future__ import annotations

import logging

import numpy as np

from tumorseg.errors import InputError
from tumorseg.evaluation.scoring import check_same_grid, read_label
from tumorseg.io.tables import read_json, read_run_splits, write_json
from tumorseg.postprocessing.choose import choose, crop_case
from tumorseg.postprocessing.operations import apply_steps
from tumorseg.tasks.labels import as_label_map

log = logging.getLogger(__name__)

#: bumped when the file's meaning changes
FORMAT = "tumorseg-postprocessing/1"


def _voxel_mm3(image) -> float:
    return float(np.prod(image.GetSpacing()))


def choose_for_run(
    run: str,
    cases: list[str],
    preds: list[str],
    refs: list[str],
    splits_tsv: str,
    labels,
    out_json: str,
    validation_fold: int | str | None = None,
    min_volumes=(),
    relabel_volumes=(),
) -> dict:
    """Choose a run's post-processing on its validation cases among ``cases`` (aligned with
    ``preds`` and ``refs``; which are validation: :func:`read_run_splits`) and write it to
    ``out_json``. Without validation cases nothing is chosen (and the file says so)."""
    labels = as_label_map(labels)
    splits = read_run_splits(splits_tsv, validation_fold)
    val = set(splits.loc[splits["split"] == "val", "case"])
    chosen_on = []
    for case, pred_path, ref_path in zip(cases, preds, refs, strict=True):
        if case not in val:
            continue
        ref_image, ref = read_label(ref_path, labels, case, "reference")
        pred_image, pred = read_label(pred_path, labels, case, "prediction")
        check_same_grid(case, pred_path, pred_image, ref_path, ref_image)
        chosen_on.append((*crop_case(pred, ref), _voxel_mm3(ref_image)))
    if not chosen_on:
        log.warning("run %s has no validation cases: no post-processing is chosen", run)
        result = {"n_cases": 0, "steps": [], "tried": [], "raw": {}, "postprocessed": {}}
    else:
        result = choose(chosen_on, labels, min_volumes, relabel_volumes)
    result = {"format": FORMAT, "run": run, "cases": sorted(val & set(cases)), **result}
    write_json(out_json, result)
    log.info(
        "%s: %d step(s) kept on %d validation cases", run, len(result["steps"]), len(chosen_on)
    )
    return result


def read_steps(path: str) -> list[dict]:
    """The kept steps of a post-processing file, checked for its format."""
    chosen = read_json(path, "post-processing choice")
    if chosen.get("format") != FORMAT or not isinstance(chosen.get("steps"), list):
        raise InputError(f"not a {FORMAT} file; delete it and rerun the workflow", path=path)
    return chosen["steps"]


def postprocess_case(
    case: str, pred_path: str, reference: str, labels, steps: list[dict], out_path: str
) -> None:
    """Apply ``steps`` to one raw prediction and write it on the same native grid, in the
    dataset's values (a slice-stack prediction as a folder of masks again)."""
    import SimpleITK as sitk

    from tumorseg.inference.export import write_segmentation

    labels = as_label_map(labels)
    image, classes = read_label(pred_path, labels, case, "prediction")
    done = apply_steps(classes, steps, labels, _voxel_mm3(image))
    out = sitk.GetImageFromArray(done.astype(np.uint8))
    out.CopyInformation(image)
    write_segmentation(out, reference, case, labels, out_path)
    log.info(
        "case %s: %d voxel(s) changed by %d step(s)", case, int((done != classes).sum()), len(steps)
    )


def postprocess_batch(cases: list[dict], labels, steps_json: str, case_logs=None) -> None:
    """:func:`postprocess_case` for a batch (dicts with ``case``, ``pred_path``,
    ``reference``, ``out_path``) with the steps of ``steps_json``."""
    from tumorseg.batches import for_each_case

    steps = read_steps(steps_json)
    for_each_case(cases, postprocess_case, case_logs, labels=labels, steps=steps)
