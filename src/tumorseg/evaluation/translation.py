"""Scoring image translation (a synthetic target modality) on the native grid.

* :func:`evaluate_translation_case` scores one case's prediction, the trivial baseline and
  the resolution ceiling against the real target, inside the brain (one-row TSV).
* :func:`per_case_translation` joins one run's case TSVs with the split table.
* :func:`summary_translation` summarises every run and compares them; one run is selected
  on validation MAE only (test scores are reported, never used to choose).

Definitions (metrics: :mod:`tumorseg.evaluation.regression`):

* Everything is in the target's z-score units: the real target file (raw intensities) is
  z-scored with the record's ``target_normalisation`` (its mean and SD inside the brain),
  the prediction and the ceiling already are. Outside the brain everything is 0.
* The **brain mask** lies on the native grid: the given mask file (non-zero = brain), else
  :func:`tumorseg.preprocessing.brainmask.mask_of` of the native input modalities with the mode the
  preprocessing used (the record's ``brain_mask``, when ``brain_mask`` is ``auto``).
* The **baseline** is the first input modality z-scored with its own ``normalisation``
  statistics (0 outside the brain) used as the prediction: a model that does not beat it
  has learnt nothing about the target's contrast.
* The **ceiling** is the real target sent down to the training resolution and back.
* One data range, the real target's (max - min inside the brain), for all three.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from tumorseg.errors import InputError
from tumorseg.evaluation.cases import pick_cases
from tumorseg.evaluation.regression import IMAGE_METRICS, image_metrics, real_data_range
from tumorseg.evaluation.summary import describe, summarise_runs
from tumorseg.evaluation.views import load_translation_case, translation_panels
from tumorseg.io.grid import Grid
from tumorseg.io.images import check_same_grid, read_image
from tumorseg.io.tables import read_run_splits, read_tsv, write_tsv
from tumorseg.names import ALL, in_split_order
from tumorseg.preprocessing.brainmask import mask_of
from tumorseg.report import figures
from tumorseg.tasks.translation import input_names, norm_stats, read_record, zscore

log = logging.getLogger(__name__)

#: sources scored beside each other: prefix of their columns
SOURCES = {"model": "", "baseline": "baseline_", "ceiling": "ceiling_"}
#: leading columns of a case TSV, in order
CASE_COLUMNS = (
    "case",
    "mae",
    "mse",
    "psnr",
    "ssim",
    "baseline_mae",
    "baseline_ssim",
    "ceiling_mae",
    "ceiling_ssim",
)
#: every metric column of a case TSV, in the order they are written and summarised
METRIC_COLUMNS = tuple(f"{p}{m}" for p in SOURCES.values() for m in IMAGE_METRICS)
#: columns after the metrics
EXTRA_COLUMNS = ("data_range", "brain_voxels")
#: leading columns of ``per_case.tsv``
PER_CASE_COLUMNS = ("case", "subject", "scanner", "split", *CASE_COLUMNS[1:])
SUMMARY_COLUMNS = ("model", "split", "scanner", "metric", "n", "mean", "std", "median", "q1", "q3")
COMPARISON_METRICS = ("mae", "ssim", "psnr", "baseline_mae", "ceiling_mae")
COMPARISON_COLUMNS = (
    "model",
    *(
        col
        for split in ("val", "test")
        for col in (f"n_{split}", *(f"{split}_{m}" for m in COMPARISON_METRICS))
    ),
    "val_score",
    "selected",
)


# ------------------------------------------------------------------ one case


def _read_on_grid(case, path, role, ref_role, ref_path, grid: Grid) -> np.ndarray:
    img = read_image(path, case, role)
    check_same_grid(case, ref_role, ref_path, grid, role, path, img)
    return sitk.GetArrayFromImage(img)


def _native_mask(case, arrays, record, mask_array, brain_mask, brain_threshold, where):
    if mask_array is not None:
        mask, mode = mask_array != 0, "file"
    else:
        mode = brain_mask
        if mode == "auto":  # the mode the preprocessing used, when the record has it
            mode = record.get("brain_mask") or "auto"
        if mode == "file":
            raise InputError(
                "the brain mask comes from a file: give it (mask_path) to score", case, where
            )
        if mode not in ("auto", "threshold", "nonzero"):
            raise InputError(f"unknown brain-mask mode {mode!r}", case, where)
        mask, mode = mask_of(arrays, mode, brain_threshold)
    if not mask.any():
        raise InputError(f"the brain mask ({mode}) is empty: nothing to score", case, where)
    return mask, mode


def _case_row(case, real, mask, scored: dict, data_range: float) -> dict:
    row = {"case": case}
    for source, prefix in SOURCES.items():
        arr = scored.get(source)
        values = (
            image_metrics(arr, real, mask, data_range)
            if arr is not None
            else dict.fromkeys(IMAGE_METRICS, np.nan)
        )
        row.update({f"{prefix}{m}": float(values[m]) for m in IMAGE_METRICS})
    row.update({"data_range": data_range, "brain_voxels": int(mask.sum())})
    return row


def _log_row(case: str, row: dict, first: str, mode: str) -> None:
    ceiling = row["ceiling_mae"]
    log.info(
        "case %s: MAE model %.4f, baseline (%s) %.4f, ceiling %s (brain: %s, %d voxels)",
        case,
        row["mae"],
        first,
        row["baseline_mae"],
        "n/a" if np.isnan(ceiling) else f"{ceiling:.4f}",
        mode,
        row["brain_voxels"],
    )


def evaluate_translation_case(
    case: str,
    pred_path: str,
    target_path: str,
    ceiling_path: str | None,
    input_paths: list[str],
    geometry_json: str,
    out_path: str,
    mask_path: str | None = None,
    brain_mask: str = "auto",
    brain_threshold: float = 0.01,
    inputs: list[str] | None = None,
) -> dict:
    """Score one case's synthetic target, the baseline and the ceiling; write a one-row TSV.

    ``input_paths`` are the native input modality files, the first being the baseline;
    ``inputs`` optionally names them (default: the geometry record's input modalities).
    Every file must lie on the prediction's grid. Without ``ceiling_path`` the ceiling
    columns are empty. Columns: :data:`CASE_COLUMNS`, then the MSE and PSNR of the baseline
    and the ceiling, ``data_range`` and ``brain_voxels``. Returns the row.
    """
    if isinstance(input_paths, str | Path):
        input_paths = [str(input_paths)]
    if not input_paths:
        raise InputError("no input modality file given", case)
    record = read_record(case, geometry_json)
    t_mean, t_std = norm_stats(case, record, None, geometry_json)
    names = input_names(record, inputs)
    first = names[0]
    b_mean, b_std = norm_stats(case, record, first, geometry_json)
    pred_img = read_image(pred_path, case, "prediction")
    grid = Grid.from_image(pred_img)
    pred = sitk.GetArrayFromImage(pred_img)

    def read(path, role):
        return _read_on_grid(case, path, role, "prediction", pred_path, grid)

    if len(names) != len(input_paths):
        names = [f"input {i + 1}" for i in range(len(input_paths))]
    arrays = [read(p, name) for p, name in zip(input_paths, names, strict=True)]
    target = read(target_path, "target")
    given = read(mask_path, "brain mask") if mask_path else None
    ceiling = read(ceiling_path, "ceiling") if ceiling_path else None
    mask, mode = _native_mask(case, arrays, record, given, brain_mask, brain_threshold, pred_path)
    real = zscore(target, t_mean, t_std, mask)
    data_range = real_data_range(real, mask)
    if not data_range > 0:
        raise InputError("the real target is constant inside the brain", case, target_path)
    scored = {"model": pred, "baseline": zscore(arrays[0], b_mean, b_std, mask)}
    if ceiling is not None:
        scored["ceiling"] = ceiling
    row = _case_row(case, real, mask, scored, data_range)
    _log_row(case, row, first, mode)
    rest = [c for c in (*METRIC_COLUMNS, *EXTRA_COLUMNS) if c not in CASE_COLUMNS]
    write_tsv(pd.DataFrame([row], columns=[*CASE_COLUMNS, *rest]), out_path)
    return row


# ------------------------------------------------------------------ tables


def _read_case_tsv(path: str) -> pd.DataFrame:
    df = read_tsv(path, "per-case translation metrics")
    missing = [c for c in CASE_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"per-case translation metrics lack the columns {missing}", path=path)
    return df


def per_case_translation(
    case_tsvs: list[str],
    splits_tsv: str,
    out_path: str,
    validation_fold: int | str | None = None,
) -> pd.DataFrame:
    """Concatenate one run's case TSVs, add ``subject``, ``scanner``, ``split`` (and
    ``fold``) from ``splits_tsv``, write ``out_path``: :data:`PER_CASE_COLUMNS` first, then
    the rest; one row per case, sorted by case. No TSVs gives the header only.
    ``validation_fold``: which cross-validation cases the run validates on
    (:func:`tumorseg.io.tables.read_run_splits`)."""
    if isinstance(case_tsvs, str | Path):
        case_tsvs = [str(case_tsvs)]
    splits = read_run_splits(splits_tsv, validation_fold)
    frames = [_read_case_tsv(p) for p in case_tsvs]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CASE_COLUMNS)
    dups = sorted(table.loc[table["case"].duplicated(), "case"].unique())
    if dups:
        raise InputError(f"cases scored more than once: {dups}", path=splits_tsv)
    unknown = sorted(set(table["case"]) - set(splits["case"]))
    if unknown:
        raise InputError(f"cases {unknown} are missing from the split table", path=splits_tsv)
    meta = splits[[c for c in splits.columns if c == "case" or c not in table.columns]]
    table = table.merge(meta, on="case", how="left", validate="one_to_one")
    if "fold" in table.columns:
        table["fold"] = pd.to_numeric(table["fold"], errors="coerce").astype("Int64")
    table = table.sort_values("case", kind="stable")
    extra = [c for c in table.columns if c not in PER_CASE_COLUMNS]
    table = table[[*PER_CASE_COLUMNS, *extra]].reset_index(drop=True)
    write_tsv(table, out_path)
    log.info("%d cases -> %s", len(table), out_path)
    return table


def summarise_translation_table(table: pd.DataFrame, model: str) -> pd.DataFrame:
    """Long-format statistics of one run's per-case table, per split, scanner (``(all)`` and
    each) and metric column (:data:`METRIC_COLUMNS` present in the table)."""
    rows = []
    metrics = [m for m in METRIC_COLUMNS if m in table.columns]
    for split in in_split_order(table["split"]):
        in_split = table[table["split"] == split]
        for scanner in [ALL, *sorted(in_split["scanner"].astype(str).unique())]:
            sub = in_split if scanner == ALL else in_split[in_split["scanner"] == scanner]
            for metric in metrics:
                stats = describe(sub[metric])
                if stats:
                    rows.append(
                        {"model": model, "split": split, "scanner": scanner, "metric": metric}
                        | stats
                    )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def compare_translation(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per run: case counts and mean metrics on val and test, ``val_score`` (the
    mean validation MAE) and ``selected`` (the lowest ``val_score``; ties to the first name
    in sorted order; no run without validation cases). Test scores never choose."""
    rows = []
    for model in sorted(tables):
        table = tables[model]
        row = {"model": model}
        for split in ("val", "test"):
            cell = table[(table["split"] == split) & table["mae"].notna()]
            row[f"n_{split}"] = int(cell["case"].nunique())
            for metric in COMPARISON_METRICS:
                values = pd.to_numeric(cell[metric], errors="coerce").dropna()
                row[f"{split}_{metric}"] = float(values.mean()) if len(values) else np.nan
        row["val_score"] = row["val_mae"] if row["n_val"] else np.nan
        rows.append(row)
    out = pd.DataFrame(rows, columns=[c for c in COMPARISON_COLUMNS if c != "selected"])
    scores = out.set_index("model")["val_score"].dropna()
    selected = None
    if len(scores):
        best = scores.min()
        selected = sorted(scores.index[scores == best])[0]
        log.info("selected run %s (mean validation MAE %.4f)", selected, best)
    elif len(out):
        log.warning("no validation cases in any run: no run is selected")
    out["selected"] = out["model"] == selected
    return out[list(COMPARISON_COLUMNS)]


def summary_translation(
    per_case_tsvs: dict[str, str], out_summary: str, out_comparison: str
) -> None:
    """Summarise several runs' ``per_case.tsv`` (``{run: path}``): ``out_summary`` in long
    format (:data:`SUMMARY_COLUMNS`: n, mean, sample SD (ddof=1, empty for one case), median
    and quartiles (linear interpolation) per run, split, scanner and metric) and
    ``out_comparison`` (:func:`compare_translation`)."""
    summarise_runs(
        per_case_tsvs,
        ("case", "scanner", "split", *COMPARISON_METRICS),
        summarise_translation_table,
        compare_translation,
        SUMMARY_COLUMNS,
        out_summary,
        out_comparison,
    )


def plot_translation_boxplots(per_case_tsv: str, out_png: str, model: str):
    """Box plots of MAE, SSIM and PSNR of a per-case table, the model beside the baseline
    and the ceiling (:func:`tumorseg.report.figures.plot_translation_boxplots`)."""
    table = read_tsv(per_case_tsv, "per-case table")
    return figures.plot_translation_boxplots(table, out_png, model)


def plot_translation_cases(
    per_case_tsv: str, cases: dict[str, dict], out_png: str, split: str = "test", max_cases=3
):
    """Input | synthetic | real | absolute error at three axial slices (30, 50 and 70 % of
    the brain's extent) of the best, median and worst ``split`` case by MAE (all scored cases
    when ``split`` has none). ``cases`` maps case -> {"input", "pred", "target", "geometry"}
    paths (optionally "mask"); only those cases can be picked.

    Images are in the target's z-score units (:mod:`tumorseg.tasks.translation`), each volume
    first reoriented to LPS (no interpolation) so that the first array axis is the axial
    one; pixel aspect comes from the spacing. The brain is the optional ``mask`` file
    (non-zero), else the voxels where the prediction is non-zero (0 outside the brain)."""
    table = read_tsv(per_case_tsv, "per-case table")
    if "mae" not in table:
        table = table.assign(mae=np.nan)
    picks, fallback = pick_cases(table, "mae", split, cases, False, max_cases)
    if not picks:
        return figures.message_figure(out_png, "no scored case to show")
    rows = [
        (lab, case, mae, translation_panels(load_translation_case(case, cases[case])))
        for lab, case, mae in picks
    ]
    where = f"all scored cases (no scored {split} case)" if fallback else f"{split} cases"
    return figures.plot_translation_cases(rows, out_png, where)


def aggregate_translation_run(
    case_tsvs: list[str],
    splits_tsv: str,
    per_case_out: str,
    boxplots_out: str,
    overlays_out: str,
    model: str,
    cases: list[str],
    images: list[str],
    targets: list[str],
    preds: list[str],
    geometries: list[str],
    validation_fold: int | str | None = None,
) -> None:
    """Everything of rule ``aggregate`` for one translation run: the per-case table, the
    box plots and the input | synthetic | real | error pictures. ``images`` (the first
    input), ``targets``, ``preds`` and ``geometries`` are aligned with ``cases``."""
    lists = (cases, images, targets, preds, geometries)
    if len({len(x) for x in lists}) != 1:
        raise InputError(f"picture inputs are not aligned: {[len(x) for x in lists]} files")
    per_case_translation(case_tsvs, splits_tsv, per_case_out, validation_fold)
    plot_translation_boxplots(per_case_out, boxplots_out, model)
    files = {
        case: {"input": image, "pred": pred, "target": target, "geometry": geometry}
        for case, image, target, pred, geometry in zip(*lists, strict=True)
    }
    plot_translation_cases(per_case_out, files, overlays_out)


def evaluate_translation_batch(
    cases: list[dict], brain_mask: str = "auto", brain_threshold: float = 0.01, case_logs=None
) -> None:
    """:func:`evaluate_translation_case` for a batch of cases in one process."""
    from tumorseg.batches import for_each_case

    for_each_case(
        cases, evaluate_translation_case, case_logs, brain_mask=brain_mask,
        brain_threshold=brain_threshold,
    )  # fmt: skip
