"""Quality-control picture of a preprocessed case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .labels import UNLABELLED, LabelMap, class_colours

#: classes outlined at most (the largest by voxel count in the view), so that a map with
#: dozens of labels stays readable
MAX_OUTLINED = 12


def _outlined_classes(label: np.ndarray, n_classes: int) -> list[int]:
    """The foreground classes to outline: all of them, or the largest ``MAX_OUTLINED``."""
    counts = np.bincount(label[label != UNLABELLED].ravel(), minlength=n_classes)[:n_classes]
    present = [c for c in range(1, n_classes) if counts[c]] or list(range(1, n_classes))
    present.sort(key=lambda c: -counts[c])
    return sorted(present[:MAX_OUTLINED])


def qc_picture(image_npy: str, label_npy: str, geometry_json: str, out_png: str) -> None:
    """Axial, coronal and sagittal mid slices (through the tumour if any) of every modality,
    as the model sees them, with the label outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = np.load(image_npy, allow_pickle=False).astype(np.float32)
    label = np.load(label_npy, allow_pickle=False)
    record = json.loads(Path(geometry_json).read_text())
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
    fig, axes = plt.subplots(
        len(views), len(mods), figsize=(2.4 * len(mods), 2.4 * len(views)), squeeze=False
    )
    for r, (view, cut) in enumerate(views.items()):
        for c, mod in enumerate(mods):
            ax = axes[r][c]
            ax.imshow(cut(image[..., c]), cmap="gray", vmin=-2.5, vmax=3.5)
            if labelled:
                lab = cut(label)
                for cls in outlined:
                    if (lab == cls).any():
                        ax.contour(lab == cls, levels=[0.5], colors=colours[cls], linewidths=0.7)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(mod)
            if c == 0:
                ax.set_ylabel(view)
    legend = ", ".join(f"{names[c]}={colours[c]}" for c in outlined)
    lost = record.get("lost_brain_voxels", 0), record.get("lost_tumour_voxels", 0)
    title = (
        f"{record['case']}  native {'x'.join(map(str, record['native']['size']))} "
        f"{record['native_orientation']}{' (resampled)' if record['resampled'] else ''}"
    )
    if any(lost):
        title += f"\noutside crop: {lost[0]} brain, {lost[1]} tumour voxels"
    fig.suptitle(title + ("" if labelled else "\n(no label)") + f"\n{legend}", fontsize=8)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
