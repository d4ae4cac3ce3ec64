"""Quality-control picture of a preprocessed case (drawn by
:func:`tumorseg.report.figures.plot_qc`)."""

from __future__ import annotations

import numpy as np

from tumorseg.io.grid import load_geometry
from tumorseg.report.figures import plot_qc
from tumorseg.tasks.labels import UNLABELLED


def qc_picture(image_npy: str, label_npy: str, geometry_json: str, out_png: str) -> None:
    """Axial, coronal and sagittal mid slices (through the tumour if any) of every modality,
    as the model sees them, with the label outlined (translation: ``label_npy`` is the
    z-scored target, drawn as one more column)."""
    image = np.load(image_npy, allow_pickle=False).astype(np.float32)
    label = np.load(label_npy, allow_pickle=False)
    record = load_geometry(geometry_json)
    if record.get("task") == "translation":  # the target is shown as one more column
        if record.get("has_target"):
            image = np.concatenate([image, label[..., None].astype(np.float32)], axis=-1)
            record = {**record, "modalities": [*record["modalities"], record["target"]]}
        label = np.full(label.shape, UNLABELLED, dtype=np.uint8)
        record = {**record, "has_label": False, "label_names": ["background"]}
    plot_qc(image, label, record, out_png)


def qc_batch(cases: list[dict], case_logs: dict[str, str] | None = None) -> None:
    """:func:`qc_picture` for a batch of cases (dicts of its arguments) in one process."""
    from tumorseg.batches import for_each_case

    for_each_case(cases, lambda case, **paths: qc_picture(**paths), case_logs)
