"""Collect per-case metrics into tables, summaries, a model comparison and pictures.

* :func:`per_case` joins the per-case TSVs of one model run with the split table.
* :func:`summary` summarises every run (mean, std, median, quartiles per split, scanner and
  region) and compares the runs; one run is *selected* on validation Dice only.
* :func:`plot_boxplots` and :func:`plot_overlays` draw the report's pictures.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .errors import InputError
from .labels import as_label_map, class_colours
from .metrics import CASE_COLUMNS, COUNTS, METRICS
from .tables import read_tsv, write_tsv

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
SUMMARY_METRICS = (*METRICS, "ceiling_dice", "ceiling_hd95", *COUNTS)
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
SPLIT_ORDER = ("train", "val", "test", "predict")
#: preferred region order (the BraTS one); other maps keep their own order
REGION_ORDER = tuple(as_label_map("brats2017").regions)
#: most regions drawn in per-scanner panels of the box plots
MAX_REGION_PANELS = 6
ALL = "all"

_SPLIT_COLOURS = {
    "train": "#8da0cb",
    "val": "#fc8d62",
    "test": "#66c2a5",
    "predict": "#b3b3b3",
}


def _read_splits(splits_tsv: str) -> pd.DataFrame:
    splits = read_tsv(splits_tsv, "split table", text=True)
    missing = [c for c in ("case", "subject", "scanner", "split") if c not in splits.columns]
    if missing:
        raise InputError(f"split table lacks the columns {missing}", path=splits_tsv)
    dups = sorted(splits.loc[splits["case"].duplicated(), "case"].unique())
    if dups:
        raise InputError(f"split table lists cases more than once: {dups}", path=splits_tsv)
    return splits


def _region_key(series: pd.Series, order=REGION_ORDER) -> pd.Series:
    rank = {r: i for i, r in enumerate(order)}
    return series.map(lambda r: rank.get(r, len(rank)))


def _regions(table: pd.DataFrame) -> list[str]:
    """Regions in the order the table lists them (per_case.tsv: the label map's order)."""
    return list(dict.fromkeys(table["region"]))


def per_case(
    case_tsvs: list[str], splits_tsv: str, out_path: str, regions=REGION_ORDER
) -> pd.DataFrame:
    """Concatenate one run's per-case metric TSVs, add ``subject``, ``scanner`` and ``split``
    from ``splits_tsv`` and write ``out_path`` (columns :data:`PER_CASE_COLUMNS` first, then
    any extra ones such as ``ceiling_hd95`` or ``fold``). Rows are sorted by case and region
    (in ``regions`` order: the label map's, WT, TC, ET for BraTS). No TSVs gives a table with
    the header only."""
    splits = _read_splits(splits_tsv)
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


def _describe(values: pd.Series) -> dict:
    v = values.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return {}
    q1, median, q3 = np.percentile(v, [25, 50, 75])
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
        "median": float(median),
        "q1": float(q1),
        "q3": float(q3),
    }


def _ordered(values, order) -> list:
    values = list(dict.fromkeys(values))
    known = [v for v in order if v in values]
    return known + sorted(v for v in values if v not in order)


def summarise_table(table: pd.DataFrame, model: str) -> pd.DataFrame:
    """Long-format statistics of one run's per-case table (see :func:`summary`)."""
    rows = []
    metrics = [m for m in SUMMARY_METRICS if m in table.columns]
    for split in _ordered(table["split"], SPLIT_ORDER):
        in_split = table[table["split"] == split]
        scanners = [ALL, *sorted(in_split["scanner"].unique())]
        for scanner in scanners:
            sub = in_split if scanner == ALL else in_split[in_split["scanner"] == scanner]
            for region in _regions(sub):
                cell = sub[sub["region"] == region]
                for metric in metrics:
                    stats = _describe(cell[metric])
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


def compare(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per run and region: mean Dice and HD95 on val and test, mean ceiling Dice,
    case counts, the run's validation score and whether it is the selected run.

    The selected run is the one with the best ``val_score`` (mean over regions of the mean
    validation Dice); ties go to the first name in sorted order. Test scores are reported
    only, never used. Without any validation cases no run is selected.
    """
    rows = []
    for model in sorted(tables):
        table = tables[model]
        val_region_means = []
        for region in _regions(table):
            by_region = table[table["region"] == region]
            row = {"model": model, "region": region}
            for split in ("val", "test"):
                cell = by_region[by_region["split"] == split]
                row[f"n_{split}"] = int(cell["case"].nunique())
                for metric in ("dice", "hd95", "ceiling_dice"):
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
        "val_dice",
        "val_hd95",
        "val_ceiling_dice",
        "n_test",
        "test_dice",
        "test_hd95",
        "test_ceiling_dice",
        "val_score",
        "selected",
    ]
    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=columns)
    scores = out.drop_duplicates("model").set_index("model")["val_score"].dropna()
    selected = None
    if len(scores):
        best = scores.max()
        selected = sorted(scores.index[scores == best])[0]
        log.info("selected run %s (mean validation Dice %.4f)", selected, best)
    else:
        log.warning("no validation cases in any run: no run is selected")
    out["selected"] = out["model"] == selected
    return out[columns]


def summary(per_case_tsvs: dict[str, str], out_summary: str, out_comparison: str) -> None:
    """Summarise several runs' ``per_case.tsv`` files (``{run name: path}``).

    ``out_summary`` (long format, :data:`SUMMARY_COLUMNS`): per run, split, scanner (plus
    ``all``), region and metric the number of cases and the mean, sample standard deviation
    (ddof=1; empty for a single case), median and quartiles (linear interpolation).
    ``out_comparison``: see :func:`compare`; selection uses validation scores only.
    """
    tables = {}
    for model, path in per_case_tsvs.items():
        table = read_tsv(path, f"per-case table of run {model}")
        missing = [c for c in ("case", "scanner", "split", "region", "dice") if c not in table]
        if missing:
            raise InputError(f"per-case table lacks the columns {missing}", path=path)
        tables[model] = table
    parts = [summarise_table(tables[m], m) for m in sorted(tables)]
    parts = [p for p in parts if not p.empty]
    stats = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    )
    write_tsv(stats, out_summary)
    write_tsv(compare(tables), out_comparison)


# --------------------------------------------------------------------------- pictures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _message_figure(out_png: str, text: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _grouped_boxes(ax, table: pd.DataFrame, group_col: str, groups: list, splits: list, metric):
    width = 0.8 / max(len(splits), 1)
    for j, split in enumerate(splits):
        data, positions = [], []
        for i, group in enumerate(groups):
            values = table.loc[
                (table[group_col] == group) & (table["split"] == split), metric
            ].dropna()
            if len(values):
                data.append(values.to_numpy(dtype=float))
                positions.append(i - 0.4 + width * (j + 0.5))
        if not data:
            continue
        parts = ax.boxplot(
            data,
            positions=positions,
            widths=width * 0.85,
            patch_artist=True,
            manage_ticks=False,
            flierprops={"markersize": 3},
            medianprops={"color": "black"},
        )
        for box in parts["boxes"]:
            box.set_facecolor(_SPLIT_COLOURS.get(split, "#dddddd"))
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30 if group_col == "scanner" else 0)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.grid(axis="y", alpha=0.3)


def plot_boxplots(per_case_tsv: str, out_png: str, model: str) -> None:
    """Box plots of Dice (top row) and HD95 (bottom row): per region in the first column,
    then per scanner for each region; one colour per split."""
    from matplotlib.patches import Patch

    table = read_tsv(per_case_tsv, "per-case table")
    table = table[table["split"] != "predict"] if "split" in table else table
    if table.empty:
        _message_figure(out_png, f"{model}: no labelled cases were scored")
        return
    plt = _pyplot()
    splits = _ordered(table["split"], SPLIT_ORDER)
    regions = _regions(table)
    scanners = sorted(table["scanner"].astype(str).unique())
    ncols = 1 + min(len(regions), MAX_REGION_PANELS)
    panel_width = max(3.0, 0.3 * max(len(scanners), len(regions)) * len(splits) + 1.2)
    fig, axes = plt.subplots(2, ncols, figsize=(panel_width * ncols + 1.0, 7), squeeze=False)
    for r, (metric, label) in enumerate((("dice", "Dice"), ("hd95", "HD95 (mm)"))):
        ax = axes[r, 0]
        _grouped_boxes(ax, table, "region", regions, splits, metric)
        ax.set_title(f"{label} by region", fontsize=10)
        ax.set_ylabel(label)
        for c, region in enumerate(regions[:MAX_REGION_PANELS], start=1):
            ax = axes[r, c]
            sub = table[table["region"] == region]
            _grouped_boxes(ax, sub, "scanner", scanners, splits, metric)
            ax.set_title(f"{region} {label} by scanner", fontsize=10)
        if metric == "dice":
            for ax in axes[r]:
                ax.set_ylim(-0.03, 1.03)
    handles = [Patch(facecolor=_SPLIT_COLOURS.get(s, "#dddddd"), label=s) for s in splits]
    fig.legend(handles=handles, loc="upper right", title="split")
    n_cases = table["case"].nunique()
    fig.suptitle(f"{model}: per-case scores on the native grid ({n_cases} cases)")
    fig.tight_layout(rect=(0, 0, 1 - 1.0 / (panel_width * ncols + 1.0), 0.95))
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _read_array(path: str, case: str, role: str = "image"):
    import SimpleITK as sitk

    from . import slices

    if slices.is_stack(path):  # a slice-stack folder: its masks, or its first channel
        if role == "image":
            image = slices.read_stack_channel(path, case, 0)
        else:
            image = slices.read_stack_masks(path, case)
        return image, sitk.GetArrayFromImage(image)
    if not Path(path).is_file():
        raise InputError("file not found", case, path)
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 4:  # 4D / vector image: show the first channel
        array = array[..., 0] if image.GetNumberOfComponentsPerPixel() > 1 else array[0]
    return image, array


def pick_cases(
    table: pd.DataFrame, split: str, candidates
) -> tuple[list[tuple[str, str, float]], bool]:
    """Best, median and worst case of ``split`` by the Dice of the table's first region
    (WT for BraTS, ``lesion`` for binary masks) among ``candidates``.

    Returns ``[(label, case, dice), ...]`` and whether it fell back to all labelled cases
    (when ``split`` has none). Ties are broken by case name; duplicates are dropped when there
    are fewer than three cases."""
    first = _regions(table)[0] if len(table) else "WT"
    wt = table[(table["region"] == first) & table["case"].isin(list(candidates))]
    wt = wt[wt["split"] != "predict"] if "split" in wt else wt
    chosen = wt[wt["split"] == split]
    fallback = chosen.empty
    if fallback:
        chosen = wt
    if chosen.empty:
        return [], fallback
    chosen = chosen.sort_values(["dice", "case"], ascending=[False, True], kind="stable")
    n = len(chosen)
    picks = []
    seen = set()
    for label, idx in (("best", 0), ("median", n // 2), ("worst", n - 1)):
        case = chosen["case"].iloc[idx]
        if case in seen:
            continue
        seen.add(case)
        picks.append((label, case, float(chosen["dice"].iloc[idx])))
    return picks, fallback


def _crop_box(image: np.ndarray, *masks: np.ndarray, margin: int = 4) -> tuple[slice, slice]:
    """In-plane box around the non-zero image (the brain) and the masks, plus a margin."""
    keep = (image != 0) & np.isfinite(image)
    for mask in masks:
        keep = keep | mask
    if not keep.any():
        return slice(None), slice(None)
    box = []
    for axis in (0, 1):
        hits = np.flatnonzero(keep.any(axis=1 - axis))
        box.append(slice(max(hits[0] - margin, 0), min(hits[-1] + 1 + margin, image.shape[axis])))
    return tuple(box)


def _window(image: np.ndarray) -> tuple[float, float]:
    values = image[np.isfinite(image) & (image != 0)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [0.5, 99.5])
    return float(lo), float(max(hi, lo + 1e-6))


def plot_overlays(
    per_case_tsv: str,
    cases: dict[str, dict],
    out_png: str,
    labels,
    split: str = "test",
) -> None:
    """Best, median and worst ``split`` case by the first region's Dice: an axial slice
    through the lesion (the one with most reference foreground voxels) of the image, then
    the reference and the
    prediction drawn over it. ``cases`` maps case -> {"image", "ref", "pred"} paths, all on
    the native grid; only cases listed there can be picked."""
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    table = read_tsv(per_case_tsv, "per-case table")
    picks, fallback = pick_cases(table, split, cases)
    if not picks:
        _message_figure(out_png, "no labelled case to show")
        return
    plt = _pyplot()
    labels = as_label_map(labels)
    colours = class_colours(labels)
    cmap = ListedColormap(colours)
    first = _regions(table)[0]
    fig, axes = plt.subplots(len(picks), 3, figsize=(10.5, 3.6 * len(picks)), squeeze=False)
    for row, (label, case, dice) in enumerate(picks):
        paths = cases[case]
        image_img, image = _read_array(paths["image"], case)
        ref_img, ref_raw = _read_array(paths["ref"], case, "label")
        _, pred_raw = _read_array(paths["pred"], case, "label")
        ref = labels.to_internal(ref_raw, case, paths["ref"])
        pred = labels.to_internal(pred_raw, case, paths["pred"])
        if not (image.shape == ref.shape == pred.shape):
            raise InputError(
                f"image {image.shape}, reference {ref.shape} and prediction {pred.shape} "
                "differ in shape",
                case,
                paths["image"],
            )
        counts = (ref > 0).sum(axis=(1, 2))
        if counts.max() == 0:
            counts = (pred > 0).sum(axis=(1, 2))
        z = int(np.argmax(counts)) if counts.max() > 0 else image.shape[0] // 2
        sx, sy = ref_img.GetSpacing()[:2]
        box = _crop_box(image[z], ref[z] > 0, pred[z] > 0)
        image_z, ref_z, pred_z = image[z][box], ref[z][box], pred[z][box]
        lo, hi = _window(image_z.astype(float))
        for col, (title, overlay) in enumerate(
            (("image", None), ("reference", ref_z), ("prediction", pred_z))
        ):
            ax = axes[row, col]
            ax.imshow(
                image_z, cmap="gray", vmin=lo, vmax=hi, aspect=sy / sx, interpolation="nearest"
            )
            if overlay is not None:
                ax.imshow(
                    np.ma.masked_equal(overlay, 0),
                    cmap=cmap,
                    vmin=0,
                    vmax=len(colours) - 1,
                    alpha=0.45,
                    aspect=sy / sx,
                    interpolation="nearest",
                )
                if overlay.any():
                    ax.contour(overlay > 0, levels=[0.5], colors="white", linewidths=0.7)
            if col == 2 and ref_z.any():  # the reference outline, for comparison
                ax.contour(ref_z > 0, levels=[0.5], colors="cyan", linewidths=0.7, linestyles="--")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(f"{label}: {case}\n{first} Dice {dice:.3f}, slice {z}")
            ax.set_title(title if row == 0 else "")
    handles = [Patch(facecolor=colours[c], label=name) for c, name in enumerate(labels.names) if c][
        :20
    ]
    handles.append(Line2D([], [], color="cyan", linestyle="--", label="reference outline"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6))
    where = f"{split} cases"
    if fallback:
        where = f"all labelled cases (no scored {split} case)"
    fig.suptitle(f"Best, median and worst of {where} by {first} Dice")
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, 0.45 / height, 1, 1 - 0.45 / height))
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


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
) -> None:
    """Everything of rule ``aggregate`` for one run: per-case table, box plots, overlays.

    ``images``, ``refs`` and ``preds`` are aligned with ``overlay_cases``; a single path
    may be given as a string."""
    case_tsvs, overlay_cases, images, refs, preds = (
        _as_list(x) for x in (case_tsvs, overlay_cases, images, refs, preds)
    )
    if not (len(overlay_cases) == len(images) == len(refs) == len(preds)):
        raise InputError(
            f"overlay inputs are not aligned: {len(overlay_cases)} cases, {len(images)} "
            f"images, {len(refs)} references, {len(preds)} predictions"
        )
    per_case(case_tsvs, splits_tsv, per_case_out, as_label_map(labels).region_names)
    plot_boxplots(per_case_out, boxplots_out, model)
    cases = {
        case: {"image": image, "ref": ref, "pred": pred}
        for case, image, ref, pred in zip(overlay_cases, images, refs, preds, strict=True)
    }
    plot_overlays(per_case_out, cases, overlays_out, labels, split=split)
