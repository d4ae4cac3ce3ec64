"""Collect per-case metrics into tables, summaries, a model comparison and pictures.

* :func:`per_case` joins the per-case TSVs of one model run with the split table.
* :func:`summary` summarises every run (mean, std, median, quartiles per split, scanner and
  region) and compares the runs; one run is *selected* on validation Dice only.
* :func:`plot_boxplots` and :func:`plot_overlays` pick what the report's pictures show;
  :mod:`tumorseg.report.figures` draws them.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from tumorseg.errors import InputError
from tumorseg.evaluation.cases import pick_cases
from tumorseg.evaluation.lesions import LESION_COLUMNS
from tumorseg.evaluation.segmentation import CASE_COLUMNS, COUNTS, METRICS
from tumorseg.evaluation.summary import describe, summarise_runs
from tumorseg.evaluation.views import overlay_view
from tumorseg.io.tables import read_run_splits, read_tsv, write_tsv
from tumorseg.names import ALL, PREDICT, in_split_order
from tumorseg.report import figures
from tumorseg.tasks.labels import as_label_map

log = logging.getLogger(__name__)

#: leading columns of ``per_case.tsv``, in order (extra columns follow)
PER_CASE_COLUMNS = (
    "case",
    "subject",
    "scanner",
    "split",
    "region",
    *METRICS,
    "ceiling_dice",
)
#: columns summarised by :func:`summary` (when present)
SUMMARY_METRICS = (*METRICS, "ceiling_dice", "ceiling_hd95", *COUNTS, *LESION_COLUMNS)
#: per-region means that :func:`compare` reports for val and test (those a table has)
COMPARED = ("dice", "hd95_pooled", "hd95_directed", "ceiling_dice", "lesion_dice", "lesion_hd95")
SUMMARY_COLUMNS = (
    "model",
    "split",
    "scanner",
    "region",
    "metric",
    "n",
    "mean",
    "std",
    "median",
    "q1",
    "q3",
)
#: preferred region order (the BraTS one); other maps keep their own order
REGION_ORDER = tuple(as_label_map("brats2017").regions)


def _region_key(series: pd.Series, order=REGION_ORDER) -> pd.Series:
    rank = {r: i for i, r in enumerate(order)}
    return series.map(lambda r: rank.get(r, len(rank)))


def _regions(table: pd.DataFrame) -> list[str]:
    """Regions in the order the table lists them (per_case.tsv: the label map's order)."""
    return list(dict.fromkeys(table["region"]))


def per_case(
    case_tsvs: list[str],
    splits_tsv: str,
    out_path: str,
    regions=REGION_ORDER,
    validation_fold: int | str | None = None,
) -> pd.DataFrame:
    """Concatenate one run's per-case metric TSVs, add ``subject``, ``scanner`` and ``split``
    from ``splits_tsv`` and write ``out_path`` (columns :data:`PER_CASE_COLUMNS` first, then
    any extra ones such as ``ceiling_hd95`` or ``fold``). Rows are sorted by case and region
    (in ``regions`` order: the label map's, WT, TC, ET for BraTS). No TSVs gives a table with
    the header only. ``validation_fold``: which cross-validation cases the run validates on
    (:func:`tumorseg.io.tables.read_run_splits`)."""
    splits = read_run_splits(splits_tsv, validation_fold)
    frames = []
    for path in case_tsvs:
        df = read_tsv(path, "per-case metrics")
        missing = [c for c in ("case", "region", *METRICS) if c not in df.columns]
        if missing:
            raise InputError(f"per-case metrics lack the columns {missing}", path=path)
        frames.append(df)
    if frames:
        table = pd.concat(frames, ignore_index=True)
    else:
        table = pd.DataFrame(columns=list(CASE_COLUMNS))
    for col in ("ceiling_dice", "ceiling_hd95"):
        if col not in table.columns:
            table[col] = np.nan
    dups = table.loc[table.duplicated(["case", "region"]), "case"].unique()
    if len(dups):
        raise InputError(f"cases scored more than once: {sorted(dups)}", path=splits_tsv)
    unknown = sorted(set(table["case"]) - set(splits["case"]))
    if unknown:
        raise InputError(f"cases {unknown} are missing from the split table", path=splits_tsv)
    extra_split_cols = [c for c in splits.columns if c not in ("case", "subject", "scanner")]
    meta = splits[["case", "subject", "scanner", *extra_split_cols]]
    table = table.merge(meta, on="case", how="left", validate="many_to_one")
    if "fold" in table.columns:
        table["fold"] = pd.to_numeric(table["fold"], errors="coerce").astype("Int64")
    table = table.sort_values(
        ["case", "region"],
        key=lambda s: _region_key(s, tuple(regions)) if s.name == "region" else s,
        kind="stable",
    )
    extra = [c for c in table.columns if c not in PER_CASE_COLUMNS]
    table = table[[*PER_CASE_COLUMNS, *extra]].reset_index(drop=True)
    write_tsv(table, out_path)
    log.info("%d cases, %d rows -> %s", table["case"].nunique(), len(table), out_path)
    return table


def summarise_table(table: pd.DataFrame, model: str) -> pd.DataFrame:
    """Long-format statistics of one run's per-case table (see :func:`summary`)."""
    rows = []
    metrics = [m for m in SUMMARY_METRICS if m in table.columns]
    for split in in_split_order(table["split"]):
        in_split = table[table["split"] == split]
        scanners = [ALL, *sorted(in_split["scanner"].unique())]
        for scanner in scanners:
            sub = in_split if scanner == ALL else in_split[in_split["scanner"] == scanner]
            for region in _regions(sub):
                cell = sub[sub["region"] == region]
                for metric in metrics:
                    stats = describe(cell[metric])
                    if stats:
                        rows.append(
                            {
                                "model": model,
                                "split": split,
                                "scanner": scanner,
                                "region": region,
                                "metric": metric,
                                **stats,
                            }
                        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def compare(tables: dict[str, pd.DataFrame], ensembles: dict[str, list[str]] | None = None):
    """One row per run and region: the means of :data:`COMPARED` on val and test (Dice, both
    HD95s, ceiling Dice, and the lesion-wise Dice and HD95 where a run has them), case
    counts, the run's validation score, whether it is kept and whether it is selected.

    ``val_score`` is the mean over regions of the mean validation Dice (a fold run's: on
    its own fold; an ensemble's with folds: out of fold, on every fold's cases). An ensemble
    of architectures (``ensembles``: run -> the runs it competes with, its ``members``) is
    ``kept`` only where its score beats every member's, as nnU-Net's
    ``find_best_configuration`` keeps an ensemble; other runs are kept.

    The selected run is the kept run, not a single fold (its validation is one fold), with
    the best ``val_score``; ties go to the first name in sorted order. Test scores are
    reported only, never used. Without any validation cases no run is selected.
    """
    ensembles = ensembles or {}
    rows = []
    present = {m for table in tables.values() for m in COMPARED if m in table.columns}
    metrics = [m for m in COMPARED if m in present or m in ("dice", "ceiling_dice")]
    for model in sorted(tables):
        table = tables[model]
        val_region_means = []
        for region in _regions(table):
            by_region = table[table["region"] == region]
            row = {"model": model, "region": region}
            for split in ("val", "test"):
                cell = by_region[by_region["split"] == split]
                row[f"n_{split}"] = int(cell["case"].nunique())
                for metric in metrics:
                    values = cell[metric].dropna() if metric in cell else pd.Series([])
                    row[f"{split}_{metric}"] = float(values.mean()) if len(values) else np.nan
            if row["n_val"]:
                val_region_means.append(row["val_dice"])
            rows.append(row)
        score = float(np.mean(val_region_means)) if val_region_means else np.nan
        for row in rows:
            if row["model"] == model:
                row["val_score"] = score
    columns = [
        "model",
        "region",
        "n_val",
        *(f"val_{m}" for m in metrics),
        "n_test",
        *(f"test_{m}" for m in metrics),
        "val_score",
        "members",
        "kept",
        "selected",
    ]
    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=columns)
    scores = out.drop_duplicates("model").set_index("model")["val_score"]
    out["members"] = out["model"].map(lambda m: ",".join(ensembles.get(m, [])))
    kept = {m: _beats_members(m, scores, ensembles.get(m, [])) for m in scores.index}
    out["kept"] = out["model"].map(kept)
    eligible = scores[[kept[m] and not FOLD_RUN.search(m) for m in scores.index]].dropna()
    selected = None
    if len(eligible):
        best = eligible.max()
        selected = sorted(eligible.index[eligible == best])[0]
        log.info("selected run %s (mean validation Dice %.4f)", selected, best)
    else:
        log.warning("no validation cases in any run: no run is selected")
    out["selected"] = out["model"] == selected
    return out[columns]


#: a cross-validation fold's run name (``unet.fold2``, post-processed ``unet.fold2.pp``)
FOLD_RUN = re.compile(r"\.fold[0-9]+(\.|$)")


def _beats_members(model: str, scores: pd.Series, members: list[str]) -> bool:
    """Whether an ensemble's validation score beats every member's (True for a run that is
    not an ensemble of architectures); a member without a score cannot be beaten."""
    if not members:
        return True
    own = scores.get(model, np.nan)
    theirs = [scores.get(m, np.nan) for m in members]
    if np.isnan(own) or any(np.isnan(t) for t in theirs):
        return False
    beaten = all(own > t for t in theirs)
    log.info(
        "ensemble %s (%.4f) %s its members %s", model, own,
        "beats" if beaten else "does not beat", dict(zip(members, theirs, strict=True)),
    )  # fmt: skip
    return beaten


def summary(
    per_case_tsvs: dict[str, str],
    out_summary: str,
    out_comparison: str,
    ensembles: dict[str, list[str]] | None = None,
) -> None:
    """Summarise several runs' ``per_case.tsv`` files (``{run name: path}``).

    ``out_summary`` (long format, :data:`SUMMARY_COLUMNS`): per run, split, scanner (plus
    ``(all)``), region and metric the number of cases and the mean, sample standard deviation
    (ddof=1; empty for a single case), median and quartiles (linear interpolation).
    ``out_comparison``: see :func:`compare` (``ensembles``: each ensemble of architectures
    and the runs it must beat); selection uses validation scores only.
    """
    summarise_runs(
        per_case_tsvs,
        ("case", "scanner", "split", "region", "dice"),
        summarise_table,
        lambda tables: compare(tables, ensembles),
        SUMMARY_COLUMNS,
        out_summary,
        out_comparison,
    )


# --------------------------------------------------------------------------- pictures


def plot_boxplots(per_case_tsv: str, out_png: str, model: str):
    """Box plots of Dice and pooled HD95 of the scored (not ``predict``) rows of a per-case table
    (:func:`tumorseg.report.figures.plot_boxplots`)."""
    table = read_tsv(per_case_tsv, "per-case table")
    table = table[table["split"] != PREDICT] if "split" in table else table
    return figures.plot_boxplots(table, out_png, model)


def plot_overlays(
    per_case_tsv: str,
    cases: dict[str, dict],
    out_png: str,
    labels,
    split: str = "test",
):
    """Best, median and worst ``split`` case by the first region's Dice: an axial slice
    through the lesion (the one with most reference foreground voxels) of the image, then
    the reference and the prediction drawn over it (and the entropy map where a case has
    one). ``cases`` maps case -> {"image", "ref", "pred"} (and "uncertainty") paths, all on
    the native grid; only cases listed there can be picked."""
    labels = as_label_map(labels)
    table = read_tsv(per_case_tsv, "per-case table")
    first = _regions(table)[0] if len(table) else labels.region_names[0]
    picks, fallback = pick_cases(table[table["region"] == first], "dice", split, cases, True)
    if not picks:
        return figures.message_figure(out_png, "no labelled case to show")
    rows = [(lab, case, dice, overlay_view(case, cases[case], labels)) for lab, case, dice in picks]
    where = f"all labelled cases (no scored {split} case)" if fallback else f"{split} cases"
    title = f"Best, median and worst of {where} by {first} Dice"
    return figures.plot_overlays(rows, out_png, labels, first, title)


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | Path):
        return [str(value)]
    return [str(v) for v in value]


def aggregate_run(
    case_tsvs: list[str],
    splits_tsv: str,
    per_case_out: str,
    boxplots_out: str,
    overlays_out: str,
    model: str,
    labels,
    overlay_cases: list[str],
    images: list[str],
    refs: list[str],
    preds: list[str],
    split: str = "test",
    uncertainties: list[str] | None = None,
    validation_fold: int | str | None = None,
) -> None:
    """Everything of rule ``aggregate`` for one run: per-case table, box plots, overlays.

    ``images``, ``refs`` and ``preds`` (and the entropy maps ``uncertainties``, if any) are
    aligned with ``overlay_cases``; a single path may be given as a string."""
    case_tsvs, overlay_cases, images, refs, preds, uncertainties = (
        _as_list(x) for x in (case_tsvs, overlay_cases, images, refs, preds, uncertainties)
    )
    if not (len(overlay_cases) == len(images) == len(refs) == len(preds)) or (
        uncertainties and len(uncertainties) != len(overlay_cases)
    ):
        raise InputError(
            f"overlay inputs are not aligned: {len(overlay_cases)} cases, {len(images)} "
            f"images, {len(refs)} references, {len(preds)} predictions, "
            f"{len(uncertainties)} uncertainty maps"
        )
    regions = as_label_map(labels).region_names
    per_case(case_tsvs, splits_tsv, per_case_out, regions, validation_fold)
    plot_boxplots(per_case_out, boxplots_out, model)
    cases = {
        case: {"image": image, "ref": ref, "pred": pred}
        for case, image, ref, pred in zip(overlay_cases, images, refs, preds, strict=True)
    }
    for case, path in zip(overlay_cases, uncertainties, strict=False):
        cases[case]["uncertainty"] = path
    plot_overlays(per_case_out, cases, overlays_out, labels, split=split)
