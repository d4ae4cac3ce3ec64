"""Scoring image translation (a synthetic target modality) on the native grid.

* :func:`evaluate_translation_case` scores one case's prediction, the trivial baseline and
  the resolution ceiling against the real target, inside the brain (one-row TSV).
* :func:`per_case_translation` joins one run's case TSVs with the split table.
* :func:`summary_translation` summarises every run and compares them; one run is selected
  on validation MAE only (test scores are reported, never used to choose).

Definitions (metrics: :mod:`tumorseg.image_metrics`):

* Everything is in the target's z-score units: the real target file (raw intensities) is
  z-scored with the record's ``target_normalisation`` (its mean and SD inside the brain),
  the prediction and the ceiling already are. Outside the brain everything is 0.
* The **brain mask** lies on the native grid: the given mask file (non-zero = brain), else
  :func:`tumorseg.brainmask.mask_of` of the native input modalities with the mode the
  preprocessing used (the record's ``brain_mask``, when ``brain_mask`` is ``auto``).
* The **baseline** is the first input modality z-scored with its own ``normalisation``
  statistics (0 outside the brain) used as the prediction: a model that does not beat it
  has learnt nothing about the target's contrast.
* The **ceiling** is the real target sent down to the training resolution and back.
* One data range, the real target's (max - min inside the brain), for all three.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from .brainmask import mask_of
from .errors import InputError
from .geometry import Grid, load_geometry
from .image_metrics import IMAGE_METRICS, image_metrics, real_data_range
from .imageio import check_same_grid, read_image
from .tables import read_tsv, write_tsv

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
SPLIT_ORDER = ("train", "val", "test", "predict")
ALL = "all"


# ------------------------------------------------------------------ one case


def _record(case: str, geometry_json: str) -> dict:
    try:
        record = load_geometry(geometry_json)
    except FileNotFoundError:
        raise InputError("geometry record not found", case, geometry_json) from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the geometry record ({err})", case, geometry_json) from None
    if not isinstance(record, dict):
        raise InputError("the geometry record is not a JSON object", case, geometry_json)
    if record.get("task", "translation") != "translation":
        raise InputError(
            f"the geometry record is of task {record['task']!r}, not translation",
            case,
            geometry_json,
        )
    if record.get("has_target") is False:
        raise InputError("the case has no target image: nothing to score", case, geometry_json)
    return record


def _stats(case: str, record: dict, key: str | None, where: str) -> tuple[float, float]:
    """(mean, std) of the record's target (``key=None``) or input modality ``key``."""
    try:
        stats = record["target_normalisation"] if key is None else record["normalisation"][key]
        mean, std = float(stats["mean"]), float(stats["std"])
    except (KeyError, TypeError, ValueError):
        what = "target_normalisation" if key is None else f"normalisation of {key}"
        raise InputError(f"the geometry record lacks a valid {what}", case, where) from None
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise InputError(f"bad normalisation statistics mean {mean}, std {std}", case, where)
    return mean, std


def input_names(record: dict, inputs: list[str] | None = None) -> list[str]:
    """The input modalities' names: ``inputs``, else the record's ``inputs``, else its
    ``modalities`` (the target left out), else its normalised modalities."""
    names = list(inputs or record.get("inputs") or record.get("modalities") or [])
    names = [n for n in names if n != record.get("target")]
    if not names:
        names = list(record.get("normalisation") or [])
    if not names:
        raise InputError("the geometry record names no input modality", record.get("case"))
    return names


def first_input(record: dict, inputs: list[str] | None = None) -> str:
    """The name of the first input modality (the baseline), see :func:`input_names`."""
    return input_names(record, inputs)[0]


def zscore(arr: np.ndarray, mean: float, std: float, mask: np.ndarray) -> np.ndarray:
    """``(arr - mean) / std`` inside ``mask``, 0 outside (float64)."""
    return np.where(mask, (np.asarray(arr, dtype=np.float64) - mean) / std, 0.0)


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
    record = _record(case, geometry_json)
    t_mean, t_std = _stats(case, record, None, geometry_json)
    names = input_names(record, inputs)
    first = names[0]
    b_mean, b_std = _stats(case, record, first, geometry_json)
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


def _read_splits(splits_tsv: str) -> pd.DataFrame:
    splits = read_tsv(splits_tsv, "split table", text=True)
    missing = [c for c in ("case", "subject", "scanner", "split") if c not in splits.columns]
    if missing:
        raise InputError(f"split table lacks the columns {missing}", path=splits_tsv)
    dups = sorted(splits.loc[splits["case"].duplicated(), "case"].unique())
    if dups:
        raise InputError(f"split table lists cases more than once: {dups}", path=splits_tsv)
    return splits


def _read_case_tsv(path: str) -> pd.DataFrame:
    df = read_tsv(path, "per-case translation metrics")
    missing = [c for c in CASE_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"per-case translation metrics lack the columns {missing}", path=path)
    return df


def per_case_translation(case_tsvs: list[str], splits_tsv: str, out_path: str) -> pd.DataFrame:
    """Concatenate one run's case TSVs, add ``subject``, ``scanner``, ``split`` (and
    ``fold``) from ``splits_tsv``, write ``out_path``: :data:`PER_CASE_COLUMNS` first, then
    the rest; one row per case, sorted by case. No TSVs gives the header only."""
    if isinstance(case_tsvs, str | Path):
        case_tsvs = [str(case_tsvs)]
    splits = _read_splits(splits_tsv)
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


def _describe(values: pd.Series) -> dict:
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if v.size == 0:
        return {}
    with np.errstate(invalid="ignore"):  # PSNR may be inf (a perfect case)
        q1, median, q3 = np.percentile(v, [25, 50, 75])
        std = float(v.std(ddof=1)) if v.size > 1 else float("nan")
        return {
            "n": int(v.size),
            "mean": float(v.mean()),
            "std": std,
            "median": float(median),
            "q1": float(q1),
            "q3": float(q3),
        }


def _ordered(values, order) -> list:
    values = list(dict.fromkeys(values))
    return [v for v in order if v in values] + sorted(v for v in values if v not in order)


def summarise_translation_table(table: pd.DataFrame, model: str) -> pd.DataFrame:
    """Long-format statistics of one run's per-case table, per split, scanner (``all`` and
    each) and metric column (:data:`METRIC_COLUMNS` present in the table)."""
    rows = []
    metrics = [m for m in METRIC_COLUMNS if m in table.columns]
    for split in _ordered(table["split"], SPLIT_ORDER):
        in_split = table[table["split"] == split]
        for scanner in [ALL, *sorted(in_split["scanner"].astype(str).unique())]:
            sub = in_split if scanner == ALL else in_split[in_split["scanner"] == scanner]
            for metric in metrics:
                stats = _describe(sub[metric])
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
    tables = {}
    for model, path in per_case_tsvs.items():
        table = read_tsv(path, f"per-case table of run {model}")
        missing = [c for c in ("case", "scanner", "split", *COMPARISON_METRICS) if c not in table]
        if missing:
            raise InputError(f"per-case table lacks the columns {missing}", path=path)
        tables[model] = table
    parts = [summarise_translation_table(tables[m], m) for m in sorted(tables)]
    parts = [p for p in parts if not p.empty]
    stats = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    )
    write_tsv(stats, out_summary)
    write_tsv(compare_translation(tables), out_comparison)


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
) -> None:
    """Everything of rule ``aggregate`` for one translation run: the per-case table, the
    box plots and the input | synthetic | real | error pictures. ``images`` (the first
    input), ``targets``, ``preds`` and ``geometries`` are aligned with ``cases``."""
    from .translation_figures import plot_translation_boxplots, plot_translation_cases

    lists = (cases, images, targets, preds, geometries)
    if len({len(x) for x in lists}) != 1:
        raise InputError(f"picture inputs are not aligned: {[len(x) for x in lists]} files")
    per_case_translation(case_tsvs, splits_tsv, per_case_out)
    plot_translation_boxplots(per_case_out, boxplots_out, model)
    files = {
        case: {"input": image, "pred": pred, "target": target, "geometry": geometry}
        for case, image, target, pred, geometry in zip(*lists, strict=True)
    }
    plot_translation_cases(per_case_out, files, overlays_out)
