"""Every picture of the workflow, in one matplotlib style and one colour per split.

* :func:`plot_qc`: the QC picture of a preprocessed case (``qc.png``);
* :func:`plot_split_summary`: subjects per scanner by split and fold (``splits.png``);
* :func:`plot_curves`: a training run's loss and validation Dice (``curves.png``);
* :func:`plot_boxplots` and :func:`plot_overlays`: a run's scores and its best, median and
  worst cases (``boxplots.png``, ``overlays.png``; the cases picked by
  :mod:`tumorseg.evaluation.cases`);
* :func:`plot_translation_cases` and :func:`plot_translation_boxplots`: an image-translation
  run's best, median and worst cases (input | synthetic | real | error) and its MAE, SSIM
  and PSNR per scanner beside the baseline and the ceiling;
* :func:`message_figure`: a picture that only says why there is nothing to draw.

Figures take plain tables, arrays and dicts already loaded (the case views of
:mod:`tumorseg.evaluation.views`) and read no file; they import no stage (only the label
maps for their colours and the split names). They draw on
:class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot state), under
:data:`STYLE`, are written atomically as PNG at :data:`DPI`, and are returned, so that a
test can look at what was drawn.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tumorseg.io.atomic import atomic_path
from tumorseg.names import ALL, SPLIT_ORDER, in_split_order
from tumorseg.tasks.labels import UNLABELLED, LabelMap, as_label_map, class_colours

#: the one style of every picture (font sizes)
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 10,
}
#: resolution of every picture
DPI = 100
#: one colour per split, in every picture
SPLIT_COLOURS = dict(zip(SPLIT_ORDER, ("#4c72b0", "#dd8452", "#55a868", "#8c8c8c"), strict=True))
_OTHER_SPLIT = "#dddddd"
#: classes outlined at most in the QC picture (the largest by voxel count in the view), so
#: that a map with dozens of labels stays readable
MAX_OUTLINED = 12
#: most regions drawn in per-scanner panels of the box plots
MAX_REGION_PANELS = 6


@contextlib.contextmanager
def _figure(path: str | Path, **kwargs):
    """A new figure in :data:`STYLE`, written to ``path`` if the block succeeds."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        fig = Figure(**kwargs)
        yield fig
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})


def message_figure(out_png: str | Path, text: str):
    with _figure(out_png, figsize=(6, 2)) as fig:
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return fig


# --------------------------------------------------------------------------- QC


def _outlined_classes(label: np.ndarray, n_classes: int) -> list[int]:
    """The foreground classes to outline: all of them, or the largest ``MAX_OUTLINED``."""
    counts = np.bincount(label[label != UNLABELLED].ravel(), minlength=n_classes)[:n_classes]
    present = [c for c in range(1, n_classes) if counts[c]] or list(range(1, n_classes))
    present.sort(key=lambda c: -counts[c])
    return sorted(present[:MAX_OUTLINED])


def _outline(ax, label: np.ndarray, classes: list[int], colours: list[str]) -> None:
    for cls in classes:
        if (label == cls).any():
            ax.contour(label == cls, levels=[0.5], colors=colours[cls], linewidths=0.7)


def _qc_title(record: dict, labelled: bool, legend: str) -> str:
    lost = record.get("lost_brain_voxels", 0), record.get("lost_tumour_voxels", 0)
    title = (
        f"{record['case']}  native {'x'.join(map(str, record['native']['size']))} "
        f"{record['native_orientation']}{' (resampled)' if record['resampled'] else ''}"
    )
    if any(lost):
        title += f"\noutside crop: {lost[0]} brain, {lost[1]} tumour voxels"
    return title + ("" if labelled else "\n(no label)") + f"\n{legend}"


def plot_qc(image: np.ndarray, label: np.ndarray, record: dict, out_png: str | Path):
    """Axial, coronal and sagittal mid slices (through the tumour if any) of every channel
    of ``image`` (z, y, x, C), with ``label``'s classes outlined; ``record`` is the case's
    geometry record (``geometry.json``)."""
    mods = record["modalities"]
    names = record.get("label_names", ["background", "necrotic", "edema", "enhancing"])
    colours = class_colours(LabelMap("qc", tuple(names), tuple(range(len(names))), {}))
    outlined = _outlined_classes(label, len(names))
    labelled = record["has_label"] and not np.all(label == UNLABELLED)
    tumour = (label > 0) & (label != UNLABELLED) if labelled else np.zeros(label.shape, bool)
    if tumour.any():
        centre = [int(np.median(ix)) for ix in np.nonzero(tumour)]
    else:
        centre = [s // 2 for s in label.shape]
    views = {
        "axial": lambda a: a[centre[0]],
        "coronal": lambda a: a[:, centre[1]][::-1],
        "sagittal": lambda a: a[:, :, centre[2]][::-1],
    }
    size = (2.4 * len(mods), 2.4 * len(views))
    with _figure(out_png, figsize=size) as fig:
        axes = fig.subplots(len(views), len(mods), squeeze=False)
        for r, (view, cut) in enumerate(views.items()):
            for c, mod in enumerate(mods):
                ax = axes[r][c]
                ax.imshow(cut(image[..., c]), cmap="gray", vmin=-2.5, vmax=3.5)
                if labelled:
                    _outline(ax, cut(label), outlined, colours)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(mod)
                if c == 0:
                    ax.set_ylabel(view)
        legend = ", ".join(f"{names[c]}={colours[c]}" for c in outlined)
        fig.suptitle(_qc_title(record, labelled, legend), fontsize="small")
        fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- splits


def _split_panel(ax, part: pd.DataFrame, by: str) -> None:
    """Stacked bars of subjects per scanner, one colour per group (split or fold)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    scanners = sorted(set(part["scanner"]))
    bottom = [0] * len(scanners)
    for i, group in enumerate(dict.fromkeys(part["group"])):
        counts = [
            int(part[(part["group"] == group) & (part["scanner"] == s)]["subjects"].sum())
            for s in scanners
        ]
        colour = SPLIT_COLOURS.get(group, cmap(i % 10)) if by == "split" else cmap(i % 10)
        label = group if by == "split" else f"fold {group}"
        ax.bar(scanners, counts, bottom=bottom, label=label, color=colour, edgecolor="white")
        for x, (c, b) in enumerate(zip(counts, bottom, strict=True)):
            if c:
                ax.text(x, b + c / 2, str(c), ha="center", va="center", color="white")
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    ax.set_xlabel("scanner")
    ax.set_ylabel("subjects")
    ax.set_title(f"subjects per scanner by {by}")
    ax.legend()
    ax.tick_params(axis="x", labelrotation=30)


def plot_split_summary(summary: pd.DataFrame, path: str | Path):
    """Stacked bars of subjects per scanner, by split (and by fold in a second panel);
    ``summary`` as :func:`tumorseg.splitting.splits.split_summary` returns it."""
    bys = [b for b in ("split", "fold") if (summary["by"] == b).any()]
    with _figure(path, figsize=(5.5 * len(bys), 4.2), layout="constrained") as fig:
        axes = fig.subplots(1, len(bys), squeeze=False)[0]
        for ax, by in zip(axes, bys, strict=True):
            part = summary[(summary["by"] == by) & (summary["group"] != ALL)]
            _split_panel(ax, part[part["scanner"] != ALL], by)
    return fig


# --------------------------------------------------------------------------- training


def plot_curves(history: pd.DataFrame, path: str | Path, title: str, best_epoch: int, metrics=()):
    """Training and validation loss, and the validation Dice of ``metrics`` (at most ten)
    and their mean, per epoch; the best epoch marked."""
    with _figure(path, figsize=(10, 4)) as fig:
        ax_loss, ax_dice = fig.subplots(1, 2)
        epochs = history["epoch"]
        for col, style in (("loss", "-"), ("val_loss", "--")):
            if col in history:
                ax_loss.plot(epochs, history[col], style, marker="o", label=col)
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("loss")
        ax_loss.legend()
        for m in (*metrics[:10], "dice_mean"):
            col = f"val_{m}"
            if col in history:
                ax_dice.plot(epochs, history[col], marker="o", label=col)
        ax_dice.set_xlabel("epoch")
        ax_dice.set_ylabel("Dice (validation)")
        ax_dice.set_ylim(0, 1)
        ax_dice.legend()
        for ax in (ax_loss, ax_dice):
            ax.axvline(best_epoch, color="grey", linestyle=":", linewidth=1)
            ax.xaxis.get_major_locator().set_params(integer=True)
        fig.suptitle(title)
        fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- scores


def _grouped_boxes(ax, series, groups: list, rotation: int = 0, points: bool = False) -> None:
    """Box plots side by side in each of ``groups``: ``series`` is a list of ``(colour,
    values per group)`` (an empty list or array draws nothing); ``points`` draws the values
    themselves over their box. The one box drawing of every box plot."""
    width = 0.8 / max(len(series), 1)
    for j, (colour, per_group) in enumerate(series):
        data, positions = [], []
        for i, values in enumerate(per_group):
            if len(values):
                data.append(values)
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
            box.set_facecolor(colour)
        if points:  # the cases themselves
            for pos, values in zip(positions, data, strict=True):
                spread = np.linspace(-width / 5, width / 5, values.size) if values.size > 1 else 0
                ax.scatter(pos + spread, values, s=6, color="black", alpha=0.5, zorder=3)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=rotation)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.grid(axis="y", alpha=0.3)


def _split_boxes(ax, table: pd.DataFrame, group_col: str, groups: list, splits: list, metric):
    """One box per split (in its colour) in each group of ``group_col``."""
    series = [
        (
            SPLIT_COLOURS.get(split, _OTHER_SPLIT),
            [
                table.loc[(table[group_col] == group) & (table["split"] == split), metric]
                .dropna()
                .to_numpy(dtype=float)
                for group in groups
            ],
        )
        for split in splits
    ]
    _grouped_boxes(ax, series, groups, rotation=30 if group_col == "scanner" else 0)


def plot_boxplots(table: pd.DataFrame, out_png: str | Path, model: str):
    """Box plots of Dice (top row) and pooled HD95 (bottom row) of the rows of ``table`` (one
    per case and region, columns ``case``, ``scanner``, ``split``, ``region``, ``dice``,
    ``hd95_pooled``): per region in the first column, then per scanner for each region; one colour
    per split."""
    from matplotlib.patches import Patch

    if table.empty:
        return message_figure(out_png, f"{model}: no labelled cases were scored")
    splits = in_split_order(table["split"])
    regions = list(dict.fromkeys(table["region"]))
    scanners = sorted(table["scanner"].astype(str).unique())
    ncols = 1 + min(len(regions), MAX_REGION_PANELS)
    panel_width = max(3.0, 0.3 * max(len(scanners), len(regions)) * len(splits) + 1.2)
    with _figure(out_png, figsize=(panel_width * ncols + 1.0, 7)) as fig:
        axes = fig.subplots(2, ncols, squeeze=False)
        for r, (metric, label) in enumerate(
            (("dice", "Dice"), ("hd95_pooled", "HD95 pooled (mm)"))
        ):
            _split_boxes(axes[r, 0], table, "region", regions, splits, metric)
            axes[r, 0].set_title(f"{label} by region")
            axes[r, 0].set_ylabel(label)
            for c, region in enumerate(regions[:MAX_REGION_PANELS], start=1):
                sub = table[table["region"] == region]
                _split_boxes(axes[r, c], sub, "scanner", scanners, splits, metric)
                axes[r, c].set_title(f"{region} {label} by scanner")
            if metric == "dice":
                for ax in axes[r]:
                    ax.set_ylim(-0.03, 1.03)
        handles = [Patch(facecolor=SPLIT_COLOURS.get(s, _OTHER_SPLIT), label=s) for s in splits]
        fig.legend(handles=handles, loc="upper right", title="split")
        n_cases = table["case"].nunique()
        fig.suptitle(f"{model}: per-case scores on the native grid ({n_cases} cases)")
        fig.tight_layout(rect=(0, 0, 1 - 1.0 / (panel_width * ncols + 1.0), 0.95))
    return fig


def _window(image: np.ndarray) -> tuple[float, float]:
    values = image[np.isfinite(image) & (image != 0)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [0.5, 99.5])
    return float(lo), float(max(hi, lo + 1e-6))


def _draw_uncertainty(fig, ax, view: dict, n_classes: int, first_row: bool):
    """The entropy map (nats, 0 to ln C) of the view's slice, with its colour bar."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("uncertainty (entropy, nats)" if first_row else "")
    if "uncertainty" not in view:
        return
    shown = {"aspect": view["aspect"], "interpolation": "nearest"}
    image = ax.imshow(view["uncertainty"], cmap="magma", vmin=0, vmax=np.log(n_classes), **shown)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


def _draw_overlay_row(axes, view: dict, colours: list[str], first_row: bool, ylabel: str):
    """Image, reference over it, prediction over it (with the reference's outline)."""
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(colours)
    lo, hi = _window(view["image"].astype(float))
    ref = view["reference"]
    for col, title in enumerate(("image", "reference", "prediction")):
        ax = axes[col]
        shown = {"aspect": view["aspect"], "interpolation": "nearest"}
        ax.imshow(view["image"], cmap="gray", vmin=lo, vmax=hi, **shown)
        overlay = view.get(title) if col else None
        if overlay is not None:
            masked = np.ma.masked_equal(overlay, 0)
            ax.imshow(masked, cmap=cmap, vmin=0, vmax=len(colours) - 1, alpha=0.45, **shown)
            if overlay.any():
                ax.contour(overlay > 0, levels=[0.5], colors="white", linewidths=0.7)
        if col == 2 and ref.any():  # the reference outline, for comparison
            ax.contour(ref > 0, levels=[0.5], colors="cyan", linewidths=0.7, linestyles="--")
        ax.set_xticks([])
        ax.set_yticks([])
        if col == 0:
            ax.set_ylabel(ylabel)
        ax.set_title(title if first_row else "")


def _overlay_legend(fig, labels: LabelMap, colours: list[str]) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colours[c], label=name) for c, name in enumerate(labels.names) if c]
    handles = handles[:20]
    handles.append(Line2D([], [], color="cyan", linestyle="--", label="reference outline"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6))


def plot_overlays(
    rows: Sequence[tuple[str, str, float, dict]],
    out_png: str | Path,
    labels,
    region: str,
    title: str,
):
    """One row per ``(label, case, dice, view)``: the view's image, then its reference and
    its prediction drawn over it (``view`` as :func:`tumorseg.evaluation.views.overlay_view`
    gives it); ``region`` names the Dice. Returns the figure (already written)."""
    labels = as_label_map(labels)
    colours = class_colours(labels)
    ncols = 4 if any("uncertainty" in view for *_, view in rows) else 3
    with _figure(out_png, figsize=(3.5 * ncols, 3.6 * len(rows))) as fig:
        axes = fig.subplots(len(rows), ncols, squeeze=False)
        for row, (label, case, dice, view) in enumerate(rows):
            ylabel = f"{label}: {case}\n{region} Dice {dice:.3f}, slice {view['z']}"
            _draw_overlay_row(axes[row], view, colours, row == 0, ylabel)
            if ncols == 4:
                _draw_uncertainty(fig, axes[row][3], view, labels.n_classes, row == 0)
        _overlay_legend(fig, labels, colours)
        fig.suptitle(title)
        height = fig.get_figheight()
        fig.tight_layout(rect=(0, 0.45 / height, 1, 1 - 0.45 / height))
    return fig


# --------------------------------------------------------------------------- translation

#: translation model, baseline and ceiling: (column prefix, colour)
SOURCE_STYLE = {
    "model": ("", "#66c2a5"),
    "baseline": ("baseline_", "#b3b3b3"),
    "ceiling": ("ceiling_", "#8da0cb"),
}
#: the translation box plots' metrics: (column, axis label)
BOX_METRICS = (("mae", "MAE (z-score units)"), ("ssim", "SSIM"), ("psnr", "PSNR (dB)"))


def _draw_translation_case(fig, axes, label: str, case: str, mae: float, panels: dict) -> None:
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
        row[0].set_ylabel(f"{label}: {case}\nMAE {mae:.3f}, slice {z}")


def plot_translation_cases(rows: Sequence[tuple[str, str, float, dict]], out_png, where: str):
    """Input | synthetic | real | absolute error of each ``(label, case, mae, panels)`` at
    its panels' axial slices (``panels`` as :func:`tumorseg.evaluation.views.translation_panels`
    gives them: the three images of a case share one grey window, the error has its own);
    ``where`` says which cases they are. Returns the figure (already written)."""
    n_rows = sum(len(p["slices"]) for *_, p in rows)
    with _figure(out_png, figsize=(13, 3.0 * n_rows)) as fig:
        axes = fig.subplots(n_rows, 4, squeeze=False)
        start = 0
        for label, case, mae, data in rows:
            n = len(data["slices"])
            _draw_translation_case(fig, axes[start : start + n], label, case, mae, data)
            start += n
        first = rows[0][3]
        titles = (
            f"input ({first['input_name']})",
            f"synthetic ({first['target_name']})",
            f"real ({first['target_name']})",
            "|synthetic - real|",
        )
        for ax, title in zip(axes[0], titles, strict=True):
            ax.set_title(title)
        fig.suptitle(f"Translation of {where}, by MAE (z-score units)")
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    return fig


def _source_boxes(ax, table: pd.DataFrame, groups: list[str], metric: str) -> None:
    """One box per source (model, baseline, ceiling; in its colour) per scanner group, the
    finite values only, with the cases drawn over them."""
    series = []
    for prefix, colour in SOURCE_STYLE.values():
        column = f"{prefix}{metric}"
        per_group = []  # a source without its column draws nothing
        if column in table:
            for group in groups:
                sub = table if group == ALL else table[table["scanner"] == group]
                values = pd.to_numeric(sub[column], errors="coerce").to_numpy(dtype=float)
                per_group.append(values[np.isfinite(values)])
        series.append((colour, per_group))
    _grouped_boxes(ax, series, groups, rotation=30, points=True)


def plot_translation_boxplots(table: pd.DataFrame, out_png: str | Path, model: str):
    """Box plots of MAE, SSIM and PSNR (columns) per split (rows) of a per-case table,
    grouped by scanner (all scanners first), the model beside the baseline and the ceiling
    (one colour each); infinite PSNRs (perfect cases) are left out. A message figure when
    nothing was scored. Returns the figure (already written)."""
    from matplotlib.patches import Patch

    if "split" in table:
        table = table[table["split"] != "predict"]
    table = table[table["mae"].notna()] if "mae" in table else table.iloc[0:0]
    if table.empty:
        return message_figure(out_png, f"{model}: no case with a real target was scored")
    splits = in_split_order(table["split"])
    groups = [ALL, *sorted(table["scanner"].astype(str).unique())]
    width = max(3.5, 0.55 * len(groups) + 1.5)
    with _figure(out_png, figsize=(3 * width + 1.5, 3.2 * len(splits) + 0.6)) as fig:
        axes = fig.subplots(len(splits), 3, squeeze=False)
        for r, split in enumerate(splits):
            sub = table[table["split"] == split]
            for c, (metric, label) in enumerate(BOX_METRICS):
                _source_boxes(axes[r, c], sub, groups, metric)
                axes[r, c].set_title(f"{split}: {label} ({sub['case'].nunique()} cases)")
                axes[r, c].set_ylabel(label)
        handles = [Patch(facecolor=c, label=name) for name, (_, c) in SOURCE_STYLE.items()]
        fig.legend(handles=handles, loc="upper right")
        fig.suptitle(f"{model}: synthetic vs real target inside the brain, native grid")
        right = 1 - 1.2 / fig.get_figwidth()
        fig.tight_layout(rect=(0, 0, right, 1 - 0.5 / fig.get_figheight()))
    return fig
