"""The report's pictures for image translation.

* :func:`plot_translation_cases`: best, median and worst case (by MAE) of a split, three
  axial slices each: input | synthetic | real | absolute error.
* :func:`plot_translation_boxplots`: MAE, SSIM and PSNR per scanner, the model beside the
  baseline and the ceiling.

Images are shown in the target's z-score units: the input and the real target are z-scored
with the geometry record's statistics (0 outside the brain), like the prediction. Every
volume is first reoriented to LPS (a permutation or flip of axes, no interpolation), so
that the first array axis is the axial one for any native grid; pixel aspect comes from the
spacing. The brain is the optional ``mask`` file of the case (non-zero), else the voxels
where the prediction is non-zero (it is 0 outside the brain by contract).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import SimpleITK as sitk

from .atomic import atomic_path
from .errors import InputError
from .imageio import read_image
from .tables import read_tsv
from .translation_eval import SPLIT_ORDER, _record, _stats, first_input, zscore

#: where the shown slices lie in the brain's axial extent
SLICE_FRACTIONS = (0.3, 0.5, 0.7)
#: model, baseline and ceiling: (column prefix, colour)
SOURCE_STYLE = {
    "model": ("", "#66c2a5"),
    "baseline": ("baseline_", "#b3b3b3"),
    "ceiling": ("ceiling_", "#8da0cb"),
}
BOX_METRICS = (("mae", "MAE (z-score units)"), ("ssim", "SSIM"), ("psnr", "PSNR (dB)"))
ALL = "all"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_png: str) -> None:
    plt = _pyplot()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def _message_figure(out_png: str, text: str) -> None:
    fig, ax = _pyplot().subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    _save(fig, out_png)


def pick_translation_cases(table: pd.DataFrame, split: str, candidates, max_cases: int = 3):
    """Up to ``max_cases`` scored cases of ``split`` among ``candidates``, evenly spread by
    MAE (best, median and worst for three; ties by case name), as ``[(label, case, mae)]``,
    and whether it fell back to all scored cases (``split`` had none)."""
    scored = table[table["case"].isin(list(candidates)) & table["mae"].notna()]
    scored = scored[scored["split"] != "predict"] if "split" in scored else scored
    chosen = scored[scored["split"] == split] if "split" in scored else scored
    fallback = chosen.empty
    if fallback:
        chosen = scored
    if chosen.empty or max_cases < 1:
        return [], fallback
    chosen = chosen.sort_values(["mae", "case"], kind="stable")
    n = len(chosen)
    idx = list(dict.fromkeys(int(round(i)) for i in np.linspace(0, n - 1, min(max_cases, n))))
    picks = []
    for k, i in enumerate(idx):
        if len(idx) > 1 and k == 0:
            label = "best"
        elif len(idx) > 1 and k == len(idx) - 1:
            label = "worst"
        elif len(idx) == 3:
            label = "median"
        else:
            label = f"rank {i + 1}/{n}"
        picks.append((label, chosen["case"].iloc[i], float(chosen["mae"].iloc[i])))
    return picks, fallback


def _lps_array(path: str, case: str, role: str):
    img = sitk.DICOMOrient(read_image(path, case, role), "LPS")
    return sitk.GetArrayFromImage(img).astype(np.float64), img.GetSpacing()


def _load_case(case: str, paths: dict) -> dict:
    """The case's input, synthetic and real images (LPS, z-scores, 0 outside the brain)."""
    missing = [k for k in ("input", "pred", "target", "geometry") if not paths.get(k)]
    if missing:
        raise InputError(f"figure inputs lack {missing}", case)
    record = _record(case, paths["geometry"])
    pred, spacing = _lps_array(paths["pred"], case, "prediction")
    image, _ = _lps_array(paths["input"], case, "input")
    target, _ = _lps_array(paths["target"], case, "target")
    if paths.get("mask"):
        brain = _lps_array(paths["mask"], case, "brain mask")[0] != 0
    else:
        brain = pred != 0
    if not (image.shape == pred.shape == target.shape == brain.shape):
        raise InputError(
            f"input {image.shape}, prediction {pred.shape} and target {target.shape} differ "
            "in shape",
            case,
            paths["pred"],
        )
    name = first_input(record)
    mean, std = _stats(case, record, name, paths["geometry"])
    t_mean, t_std = _stats(case, record, None, paths["geometry"])
    return {
        "input": zscore(image, mean, std, brain),
        "pred": np.where(brain, pred, 0.0),
        "real": zscore(target, t_mean, t_std, brain),
        "brain": brain,
        "spacing": spacing,
        "input_name": name,
        "target_name": record.get("target", "target"),
    }


def brain_slices(brain: np.ndarray, fractions=SLICE_FRACTIONS) -> list[int]:
    """Axial (first-axis) slices at ``fractions`` of the brain's extent (distinct)."""
    hits = np.flatnonzero(brain.any(axis=(1, 2)))
    if hits.size == 0:
        return [brain.shape[0] // 2]
    lo, hi = int(hits[0]), int(hits[-1])
    return list(dict.fromkeys(int(round(lo + f * (hi - lo))) for f in fractions))


def _box(brain: np.ndarray, margin: int = 3) -> tuple[slice, slice]:
    keep = brain.any(axis=0)
    if not keep.any():
        return slice(None), slice(None)
    box = []
    for axis in (0, 1):
        hits = np.flatnonzero(keep.any(axis=1 - axis))
        box.append(slice(max(hits[0] - margin, 0), min(hits[-1] + 1 + margin, keep.shape[axis])))
    return tuple(box)


def _window(*images, brain) -> tuple[float, float]:
    values = np.concatenate([im[brain] for im in images])
    if values.size == 0:
        return -2.0, 2.0
    lo, hi = np.percentile(values, [0.5, 99.5])
    return float(lo), float(max(hi, lo + 1e-6))


def _panels(data: dict) -> dict:
    """The shown slices of a loaded case (cropped to the brain), its grey window and
    error scale, so that the volumes can be dropped before the next case is read."""
    brain = data["brain"]
    error = np.abs(data["pred"] - data["real"])
    lo, hi = _window(data["input"], data["pred"], data["real"], brain=brain)
    err_max = float(np.percentile(error[brain], 99.5)) if brain.any() else 1.0
    box = _box(brain)
    slices = brain_slices(brain)
    out = {key: [data[key][z][box] for z in slices] for key in ("input", "pred", "real")}
    out["error"] = [error[z][box] for z in slices]
    out.update(
        slices=slices,
        window=(lo, hi),
        err_max=max(err_max, 1e-6),
        aspect=data["spacing"][1] / data["spacing"][0],  # sy / sx of an axial (y, x) slice
        input_name=data["input_name"],
        target_name=data["target_name"],
    )
    return out


def _draw_case(fig, axes, label: str, case: str, mae: float, panels: dict) -> None:
    lo, hi = panels["window"]
    shown = {"interpolation": "nearest", "aspect": panels["aspect"]}
    for r, (row, z) in enumerate(zip(axes, panels["slices"], strict=True)):
        for col, key in enumerate(("input", "pred", "real")):
            row[col].imshow(panels[key][r], cmap="gray", vmin=lo, vmax=hi, **shown)
        err = row[3].imshow(
            panels["error"][r], cmap="magma", vmin=0, vmax=panels["err_max"], **shown
        )
        fig.colorbar(err, ax=row[3], fraction=0.046, pad=0.04)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(f"{label}: {case}\nMAE {mae:.3f}, slice {z}", fontsize=9)


def plot_translation_cases(
    per_case_tsv: str, cases: dict[str, dict], out_png: str, split: str = "test", max_cases=3
) -> None:
    """Input | synthetic | real | absolute error at three axial slices (30, 50 and 70 % of
    the brain's extent) of the best, median and worst ``split`` case by MAE (all scored cases
    when ``split`` has none). ``cases`` maps case -> {"input", "pred", "target", "geometry"}
    paths (optionally "mask"); only those cases can be picked. The three images of a case
    share one grey window (0.5-99.5 % of their brain voxels); the error has its own."""
    table = read_tsv(per_case_tsv, "per-case table")
    picks, fallback = pick_translation_cases(table, split, cases, max_cases)
    if not picks:
        _message_figure(out_png, "no scored case to show")
        return
    loaded = [(lab, case, mae, _panels(_load_case(case, cases[case]))) for lab, case, mae in picks]
    n_rows = sum(len(p["slices"]) for *_, p in loaded)
    fig, axes = _pyplot().subplots(n_rows, 4, figsize=(13, 3.0 * n_rows), squeeze=False)
    start = 0
    for label, case, mae, data in loaded:
        n = len(data["slices"])
        _draw_case(fig, axes[start : start + n], label, case, mae, data)
        start += n
    first = loaded[0][3]
    titles = (
        f"input ({first['input_name']})",
        f"synthetic ({first['target_name']})",
        f"real ({first['target_name']})",
        "|synthetic - real|",
    )
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set_title(title)
    where = f"all scored cases (no scored {split} case)" if fallback else f"{split} cases"
    fig.suptitle(f"Translation of {where}, by MAE (z-score units)")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    _save(fig, out_png)


def _source_boxes(ax, table: pd.DataFrame, groups: list[str], metric: str) -> None:
    width = 0.8 / len(SOURCE_STYLE)
    for j, (prefix, colour) in enumerate(SOURCE_STYLE.values()):
        column = f"{prefix}{metric}"
        if column not in table:
            continue
        data, positions = [], []
        for i, group in enumerate(groups):
            sub = table if group == ALL else table[table["scanner"] == group]
            values = pd.to_numeric(sub[column], errors="coerce").to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if values.size:
                data.append(values)
                positions.append(i - 0.4 + width * (j + 0.5))
        if data:
            parts = ax.boxplot(
                data,
                positions=positions,
                widths=width * 0.85,
                patch_artist=True,
                manage_ticks=False,
                flierprops={"markersize": 3},
                medianprops={"color": "black"},
            )
            for patch in parts["boxes"]:
                patch.set_facecolor(colour)
            for pos, values in zip(positions, data, strict=True):  # the cases themselves
                offsets = np.linspace(-width / 5, width / 5, values.size) if values.size > 1 else 0
                ax.scatter(pos + offsets, values, s=6, color="black", alpha=0.5, zorder=3)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.grid(axis="y", alpha=0.3)


def plot_translation_boxplots(per_case_tsv: str, out_png: str, model: str) -> None:
    """Box plots of MAE, SSIM and PSNR (columns) per split (rows), grouped by scanner (all
    scanners first), the model beside the baseline and the ceiling (one colour each);
    infinite PSNRs (perfect cases) are left out. A message figure when nothing was scored."""
    from matplotlib.patches import Patch

    table = read_tsv(per_case_tsv, "per-case table")
    if "split" in table:
        table = table[table["split"] != "predict"]
    table = table[table["mae"].notna()] if "mae" in table else table.iloc[0:0]
    if table.empty:
        _message_figure(out_png, f"{model}: no case with a real target was scored")
        return
    splits = [s for s in SPLIT_ORDER if s in set(table["split"])] + sorted(
        set(table["split"]) - set(SPLIT_ORDER)
    )
    groups = [ALL, *sorted(table["scanner"].astype(str).unique())]
    width = max(3.5, 0.55 * len(groups) + 1.5)
    fig, axes = _pyplot().subplots(
        len(splits), 3, figsize=(3 * width + 1.5, 3.2 * len(splits) + 0.6), squeeze=False
    )
    for r, split in enumerate(splits):
        sub = table[table["split"] == split]
        for c, (metric, label) in enumerate(BOX_METRICS):
            _source_boxes(axes[r, c], sub, groups, metric)
            axes[r, c].set_title(f"{split}: {label} ({sub['case'].nunique()} cases)", fontsize=10)
            axes[r, c].set_ylabel(label)
    handles = [Patch(facecolor=colour, label=name) for name, (_, colour) in SOURCE_STYLE.items()]
    fig.legend(handles=handles, loc="upper right")
    fig.suptitle(f"{model}: synthetic vs real target inside the brain, native grid")
    fig.tight_layout(rect=(0, 0, 1 - 1.2 / fig.get_figwidth(), 1 - 0.5 / fig.get_figheight()))
    _save(fig, out_png)
