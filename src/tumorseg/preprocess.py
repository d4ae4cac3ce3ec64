"""One case from native scans to downsampled training slices plus its geometry record."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from . import geometry as geo
from .atomic import atomic_path
from .errors import InputError
from .imageio import check_same_grid, read_case_images, read_image
from .labels import N_CLASSES, UNLABELLED, to_internal

log = logging.getLogger("tumorseg")


def modality_mask(arr: np.ndarray, threshold: float) -> np.ndarray:
    """Voxels above ``threshold`` x the 99th percentile of the positive voxels."""
    flat = arr.ravel()
    sample = flat[:: max(1, flat.size // 2_000_000)]
    pos = sample[sample > 0]
    if pos.size == 0:
        return np.zeros(arr.shape, dtype=bool)
    k = int(0.99 * (pos.size - 1))
    cut = threshold * float(np.partition(pos, k)[k])
    if arr.dtype.kind in "ui":  # x > t  <=>  x > floor(t): compare in the image's own type
        return arr > arr.dtype.type(min(np.floor(cut), np.iinfo(arr.dtype).max))
    return arr > arr.dtype.type(cut)


def brain_mask(arrays: list[np.ndarray], threshold: float, threads: int = 1) -> np.ndarray:
    """Brain = voxels inside :func:`modality_mask` of any modality (robust to a background
    that is not exactly 0, and to dark tissue in one modality)."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        masks = list(pool.map(lambda a: modality_mask(a, threshold), arrays))
    out = masks[0]
    for m in masks[1:]:
        np.logical_or(out, m, out=out)
    return out


def preprocess_case(
    case: str,
    paths: dict[str, str] | None,
    image4d: str | None,
    seg: str | None,
    modalities: list[str],
    image_channels: list[str],
    convention: str,
    canonical_size,
    canonical_spacing,
    crop_size,
    crop_mode: str,
    downsample,
    brain_threshold: float,
    out_image: str,
    out_label: str,
    out_slices: str,
    out_geometry: str,
    threads: int = 1,
) -> dict:
    """Preprocess one case and write its arrays, slice index and geometry record.

    Returns the geometry record.
    """
    images = read_case_images(case, paths, image4d, modalities, image_channels, threads)
    image_file = image4d or paths[modalities[0]]
    native = geo.Grid.from_image(images[0])
    seg_img = None
    if seg:
        seg_img = read_image(seg, case, "seg")
        check_same_grid(case, modalities[0], image_file, native, "seg", seg, seg_img)

    oriented_imgs = [geo.reorient(img) for img in images]
    oriented = geo.Grid.from_image(oriented_imgs[0])
    canonical, resample = geo.canonical_grid(oriented, canonical_size, canonical_spacing)
    if resample:
        log.info(
            "case %s: native grid %s resampled onto canonical %s",
            case,
            native.describe(),
            canonical.describe(),
        )
        arrays = [
            sitk.GetArrayFromImage(geo.resample_image(img, canonical)) for img in oriented_imgs
        ]
    else:
        arrays = [sitk.GetArrayViewFromImage(img) for img in oriented_imgs]

    classes = None
    if seg_img is not None:
        seg_oriented = geo.reorient(seg_img)  # keep it alive while its array view is used
        classes = to_internal(sitk.GetArrayViewFromImage(seg_oriented), convention, case, seg)
        if resample:
            classes = geo.resample_labels(classes, oriented, canonical)

    mask = brain_mask(arrays, brain_threshold, threads)
    n_brain = int(mask.sum())
    if n_brain == 0:
        raise InputError(
            "the brain is empty: no voxel above background in any modality", case, image_file
        )
    if n_brain < 1000:
        raise InputError(f"the brain has only {n_brain} voxels", case, image_file)

    start = geo.crop_box(mask.shape, crop_size, crop_mode, mask)
    lost_brain = geo.outside_crop(mask, start, crop_size)
    lost_tumour = 0 if classes is None else geo.outside_crop(classes > 0, start, crop_size)
    if lost_brain:
        log.warning(
            "case %s: %d brain voxels (%.2f%%) lie outside the %sx%s crop",
            case,
            lost_brain,
            100.0 * lost_brain / n_brain,
            *crop_size,
        )
    if lost_tumour:
        log.warning("case %s: %d tumour voxels lie outside the crop", case, lost_tumour)

    mask_c = np.ascontiguousarray(geo.crop(mask, start, crop_size))
    brain_frac = geo.downsample_mean(mask_c, downsample)

    def channel(mod_arr):
        # z = (x - mean) / std inside the brain, 0 outside; block-averaged. Averaging is
        # linear, so it is computed as (mean(x * m) - mean * mean(m)) / std on the blocks,
        # which avoids a full-resolution float copy of every modality.
        mod, arr = mod_arr
        arr_c = geo.crop(arr, start, crop_size)
        # brain statistics from a fixed lattice of every 2nd voxel per axis: deterministic,
        # and with >100k brain voxels as exact as the full count for a mean and an SD
        values = arr_c[::2, ::2, ::2][mask_c[::2, ::2, ::2]]
        if values.size < 1000:
            values = arr_c[mask_c]
        values = values.astype(np.float64)
        mean = float(values.mean())
        std = float(values.std())
        if not std > 0:
            raise InputError(f"{mod} is constant inside the brain", case, image_file)
        masked = arr_c * mask_c  # keeps the integer type: no float copy
        block = geo.downsample_mean(masked, downsample)
        block -= np.float32(mean) * brain_frac
        block *= np.float32(1.0 / std)
        return block, {"mean": mean, "std": std}

    def label_channel():
        if classes is None:
            return None
        return geo.downsample_labels(geo.crop(classes, start, crop_size), downsample)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        label_job = pool.submit(label_channel)
        results = list(pool.map(channel, zip(modalities, arrays, strict=True)))
        label = label_job.result()
    image = np.stack([r[0] for r in results], axis=-1).astype(np.float16)
    stats = {mod: r[1] for mod, r in zip(modalities, results, strict=True)}
    ds_shape = image.shape[:3]
    brain_ds = brain_frac > 0

    if label is not None:
        counts = np.stack([(label == c).sum(axis=(1, 2)) for c in range(N_CLASSES)], -1)
    else:
        label = np.full(ds_shape, UNLABELLED, dtype=np.uint8)
        counts = None

    slices = pd.DataFrame(
        {"case": case, "slice": np.arange(ds_shape[0]), "brain_voxels": brain_ds.sum(axis=(1, 2))}
    )
    for c in range(N_CLASSES):
        slices[f"voxels_{c}"] = pd.array(
            counts[:, c] if counts is not None else [pd.NA] * ds_shape[0], dtype="Int64"
        )

    record = {
        "case": case,
        "modalities": list(modalities),
        "label_convention": convention,
        "has_label": classes is not None,
        "native": native.to_dict(),
        "native_orientation": native.orientation,
        "oriented": oriented.to_dict(),
        "resampled": bool(resample),
        "canonical": canonical.to_dict(),
        "crop": {"start": [int(v) for v in start], "size": [int(v) for v in crop_size]},
        "downsample": [int(v) for v in downsample],
        "downsampled_shape_zyx": [int(v) for v in ds_shape],
        "brain_voxels": n_brain,
        "lost_brain_voxels": lost_brain,
        "lost_tumour_voxels": lost_tumour,
        "normalisation": stats,
    }
    _save_npy(out_image, image)
    _save_npy(out_label, label)
    with atomic_path(out_slices) as tmp:
        slices.to_csv(tmp, sep="\t", index=False)
    with atomic_path(out_geometry) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return record


def _save_npy(path: str, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)


def load_geometry(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def summarise(geometry_jsons: list[str], slices_tsvs: list[str], out_path: str) -> pd.DataFrame:
    """One row per preprocessed case: native grid, resampling, crop losses and label voxels.

    Cases that lost brain or tumour voxels outside the crop stand out here (and in the report).
    """
    rows = []
    for geom_path, slices_path in zip(geometry_jsons, slices_tsvs, strict=True):
        rec = load_geometry(geom_path)
        slices = pd.read_csv(slices_path, sep="\t")
        native = rec["native"]
        row = {
            "case": rec["case"],
            "native_size": "x".join(str(v) for v in native["size"]),
            "native_spacing": "x".join(f"{v:g}" for v in native["spacing"]),
            "native_orientation": rec["native_orientation"],
            "resampled": rec["resampled"],
            "labelled": rec["has_label"],
            "slices": len(slices),
            "brain_slices": int((slices["brain_voxels"] > 0).sum()),
            "brain_voxels": rec["brain_voxels"],
            "lost_brain_voxels": rec["lost_brain_voxels"],
            "lost_tumour_voxels": rec["lost_tumour_voxels"],
        }
        for c in range(1, N_CLASSES):
            row[f"voxels_{c}"] = slices[f"voxels_{c}"].sum() if rec["has_label"] else pd.NA
        rows.append(row)
    df = pd.DataFrame(rows).sort_values("case")
    lost = df[(df["lost_brain_voxels"] > 0) | (df["lost_tumour_voxels"] > 0)]
    for _, r in lost.iterrows():
        log.warning(
            "case %s: %d brain and %d tumour voxels outside the crop",
            r["case"],
            r["lost_brain_voxels"],
            r["lost_tumour_voxels"],
        )
    with atomic_path(out_path) as tmp:
        df.to_csv(tmp, sep="\t", index=False)
    return df
