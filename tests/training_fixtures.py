"""Training fixtures shared by tests and benchmarks: the model defaults of the config schema
and small synthetic preprocessed cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def model_defaults(schema_path: str | Path = SCHEMA) -> dict:
    """Default model settings, read from ``$defs/model`` of the config schema."""
    import yaml

    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)

    def defaults(node: dict) -> dict:
        out = {}
        for key, prop in node.get("properties", {}).items():
            if prop.get("type") == "object" and "properties" in prop:
                out[key] = {**defaults(prop), **prop.get("default", {})}
            elif "default" in prop:
                out[key] = prop["default"]
        return out

    return defaults(schema["$defs"]["model"])


def write_synthetic_cases(
    folder: str | Path,
    cases: dict[str, str],
    depth: int = 12,
    size: int = 32,
    channels: int = 4,
    seed: int = 0,
) -> Path:
    """Write synthetic preprocessed cases and a ``splits.tsv`` (for tests and benchmarks).

    ``cases`` maps case ID to split (train/val/test). Each case is a z-scored noisy
    ellipsoid "brain" (0 outside) holding a spherical tumour (necrotic core, enhancing rim,
    edema shell) that is brighter in every channel; the first and last slices hold no
    brain. Files follow the preprocessing contract exactly. Returns the splits path.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(
        np.arange(depth), np.arange(size), np.arange(size), indexing="ij", sparse=True
    )
    centre = (depth - 1) / 2, (size - 1) / 2, (size - 1) / 2
    brain = (
        ((zz - centre[0]) / (0.45 * depth)) ** 2
        + ((yy - centre[1]) / (0.42 * size)) ** 2
        + ((xx - centre[2]) / (0.38 * size)) ** 2
    ) <= 1.0
    brain[0] = brain[-1] = False
    rows = []
    for case, split in cases.items():
        radius = rng.uniform(0.12, 0.2) * size
        cz = rng.uniform(0.35, 0.65) * depth
        cy = centre[1] + rng.uniform(-0.15, 0.15) * size
        cx = centre[2] + rng.uniform(-0.12, 0.12) * size
        dist = (
            np.sqrt(((zz - cz) * size / depth / 2) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2) / radius
        )
        label = np.zeros((depth, size, size), np.uint8)
        label[dist < 1.0] = 2
        label[dist < 0.7] = 3
        label[dist < 0.4] = 1
        label[~brain] = 0
        offsets = np.array([[0, 0, 0, 0], [1.5, -1, 1, 1], [3, 0.5, 0, 2.5], [2, 1, 3, 1]])
        image = rng.normal(0, 1, (depth, size, size, channels))
        image += offsets[label][..., :channels] if channels <= 4 else 0
        image[~brain] = 0
        out = folder / case
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "image.npy", image.astype(np.float16), allow_pickle=False)
        np.save(out / "label.npy", label, allow_pickle=False)
        table = pd.DataFrame(
            {
                "case": case,
                "slice": np.arange(depth),
                "brain_voxels": brain.reshape(depth, -1).sum(axis=1),
                **{f"voxels_{c}": (label == c).reshape(depth, -1).sum(axis=1) for c in range(4)},
            }
        )
        table.to_csv(out / "slices.tsv", sep="\t", index=False)
        rows.append({"case": case, "subject": case, "scanner": "synth", "split": split})
    splits = folder / "splits.tsv"
    pd.DataFrame(rows).to_csv(splits, sep="\t", index=False)
    return splits


#: the smallest U-Net the prediction tests load: one level, two filters, no batch norm
TINY_UNET = {
    "architecture": "unet",
    "depth": 1,
    "base_filters": 2,
    "batch_norm": False,
    "dropout": 0.0,
    "upsampling": "upsample",
    "kernel_size": 3,
    "seed": 0,
}


def save_tiny_unet(path: str | Path, n_channels: int = 4) -> str:
    """Save an untrained :data:`TINY_UNET` (seeded, so the same weights every time) as a
    ``.keras`` file; returns its path."""
    import keras

    from tumorseg.training.models import build_model

    keras.utils.set_random_seed(0)
    build_model(dict(TINY_UNET), n_channels=n_channels).save(path)
    return str(path)
