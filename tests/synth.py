"""Small synthetic scans on arbitrary grids, for geometry and bad-input tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

MODS = ["flair", "t1", "t1ce", "t2"]
BRATS_GRID = {
    "size": (240, 240, 155),
    "spacing": (1.0, 1.0, 1.0),
    "origin": (0.0, -239.0, 0.0),
    "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1),
}


def physical_points(img: sitk.Image) -> np.ndarray:
    """LPS coordinates (z, y, x, 3) of every voxel centre."""
    size = img.GetSize()
    idx = np.stack(
        np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")[::-1], axis=-1
    ).astype(float)  # (z, y, x, [i, j, k])
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    m = d * np.asarray(img.GetSpacing())
    return idx @ m.T + np.asarray(img.GetOrigin())


def grid_image(grid: dict, array=None, pixel=sitk.sitkInt16) -> sitk.Image:
    if array is None:
        img = sitk.Image(list(grid["size"]), pixel)
    else:
        img = sitk.GetImageFromArray(array)
    img.SetSpacing(grid["spacing"])
    img.SetOrigin(grid["origin"])
    img.SetDirection([float(v) for v in grid["direction"]])
    return img


def centre_of(grid: dict) -> np.ndarray:
    d = np.asarray(grid["direction"], float).reshape(3, 3)
    return d @ ((np.asarray(grid["size"]) - 1) / 2 * np.asarray(grid["spacing"])) + grid["origin"]


def phantom(grid: dict, tumour_offset=(25.0, -20.0, 10.0), et=True):
    """Brain ellipsoid and an off-centre tumour (core, rim, edema) at fixed physical places
    relative to the grid centre, so they are the same anatomy on every grid."""
    ref = grid_image(grid)
    pts = physical_points(ref) - centre_of(grid)
    brain = ((pts / np.array([70.0, 85.0, 60.0])) ** 2).sum(-1) <= 1
    r = np.linalg.norm(pts - np.asarray(tumour_offset), axis=-1)
    label = np.zeros(brain.shape, np.uint8)
    label[(r < 22) & brain] = 2
    label[r < 13] = 4 if et else 1
    label[r < 8] = 1
    rng = np.random.default_rng(0)
    images = {}
    base = {
        "flair": (300, 900, 0),
        "t1": (500, 300, 150),
        "t1ce": (520, 1100, 100),
        "t2": (400, 1000, 250),
    }
    for mod, (tissue, tumour, core) in base.items():
        arr = np.where(brain, tissue, 0).astype(np.float32)
        arr[label == 2] = tumour * 0.8 if mod in ("flair", "t2") else tissue * 0.9
        arr[label == 4] = tumour
        arr[label == 1] = core
        arr += np.where(brain, rng.normal(0, 15, brain.shape), 0)
        images[mod] = arr.astype(np.int16)
    return images, label


def write_case(folder: Path, case: str, grid: dict, et=True, seg=True) -> dict:
    """Write a phantom case as NIfTI; returns {modality/seg: path}."""
    folder = Path(folder) / case
    folder.mkdir(parents=True, exist_ok=True)
    images, label = phantom(grid, et=et)
    paths = {}
    for mod, arr in images.items():
        p = folder / f"{case}_{mod}.nii.gz"
        sitk.WriteImage(grid_image(grid, arr), str(p))
        paths[mod] = str(p)
    if seg:
        p = folder / f"{case}_seg.nii.gz"
        sitk.WriteImage(grid_image(grid, label), str(p))
        paths["seg"] = str(p)
    return paths


SETTINGS = {
    "modalities": MODS,
    "image_channels": MODS,
    "labels": "brats2017",
    "canonical_size": [240, 240, 155],
    "canonical_spacing": [1.0, 1.0, 1.0],
    "crop_size": [192, 192],
    "crop_mode": "center",
    "downsample": [2, 2, 2],
    "brain_mask": "auto",
    "brain_threshold": 0.01,
    "stack": {"size": [256, 256], "downsample": [2, 2]},
}


def preprocess(
    case: str,
    paths: dict,
    outdir,
    seg="from-paths",
    convention="brats2017",
    threads: int = 1,
    **settings,
) -> tuple[dict, dict]:
    """``preprocess_case`` with the default settings; returns (record, output paths)."""
    from tumorseg.preprocessing.preprocess import preprocess_case

    outdir = Path(outdir)
    outputs = dict(_OUTPUTS)
    if settings.get("target"):  # translation: target.npy instead of label.npy
        outputs["target"] = outputs.pop("label")
    out = {k: str(outdir / f"{k}.{ext}") for k, ext in outputs.items()}
    inputs = {"images": {m: paths[m] for m in MODS} if "image" not in paths else None}
    inputs["image"] = paths.get("image")
    inputs["seg"] = paths.get("seg") if seg == "from-paths" else seg
    inputs["mask"] = paths.get("mask")
    inputs.update(settings.pop("_inputs", {}))  # e.g. translation: the inputs and target
    record = preprocess_case(
        case, inputs, {**SETTINGS, "labels": convention, **settings}, out, threads=threads
    )
    return record, {f"{k}.{ext}": out[k] for k, ext in outputs.items()}


_OUTPUTS = {"image": "npy", "label": "npy", "slices": "tsv", "geometry": "json"}
