"""One case from native scans to downsampled training slices plus its geometry record."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import SimpleITK as sitk

from tumorseg.errors import InputError
from tumorseg.io import slices
from tumorseg.io.atomic import atomic_path
from tumorseg.io.grid import Grid, load_geometry
from tumorseg.io.images import check_same_grid, read_case_images, read_image
from tumorseg.io.tables import read_tsv, write_json, write_tsv
from tumorseg.preprocessing import geometry as geo
from tumorseg.preprocessing.brainmask import mask_of
from tumorseg.tasks.labels import UNLABELLED, LabelMap, as_label_map

log = logging.getLogger("tumorseg")


@dataclass
class CaseImages:
    """A case's images as read, before any resampling."""

    images: list[sitk.Image]
    image_file: str
    seg_file: str | None
    seg: sitk.Image | None
    mask: sitk.Image | None
    stack: bool
    has_target: bool = False  # translation: the target is the last of ``images``


def read_inputs(case: str, inputs: dict, settings: dict) -> CaseImages:
    """Read the modalities (separate files, one 4D file or a slice-stack folder), the label
    and the brain mask, all checked to lie on one grid."""
    mods, channels = settings["modalities"], settings["image_channels"]
    image, seg, mask = inputs.get("image"), inputs.get("seg") or None, inputs.get("mask") or None
    stack = bool(image) and slices.is_stack(image)
    if stack:
        images = slices.read_stack_images(image, case, mods, channels)
        seg_img = slices.read_stack_masks(seg, case) if seg else None
        image_file = image
    else:
        images = read_case_images(case, inputs.get("images"), image, mods, channels)
        image_file = image or inputs["images"][mods[0]]
        seg_img = read_image(seg, case, "seg") if seg else None
    native = Grid.from_image(images[0])
    mask_img = read_image(mask, case, "mask") if mask else None
    target = inputs.get("target") or None
    target_img = read_image(target, case, settings["target"]) if target else None
    for role, path, img in (
        ("seg", seg, seg_img),
        ("mask", mask, mask_img),
        (settings.get("target"), target, target_img),
    ):
        if img is not None:
            check_same_grid(case, mods[0], image_file, native, role, path, img)
    if target_img is not None:
        images = [*images, target_img]
    return CaseImages(images, image_file, seg, seg_img, mask_img, stack, target_img is not None)


def _to_canonical(case: str, read: CaseImages, settings: dict, labels: LabelMap):
    """Reorient (exact) and, where needed, resample onto the canonical grid: arrays, label
    classes, a given brain mask, and the grids."""
    oriented_imgs = [geo.reorient(img) for img in read.images]
    oriented = Grid.from_image(oriented_imgs[0])
    if read.stack:
        canonical, resample = geo.stack_canonical_grid(oriented, settings["stack"]["size"])
    else:
        canonical, resample = geo.canonical_grid(
            oriented, settings["canonical_size"], settings["canonical_spacing"]
        )
    if resample:
        log.info("case %s: %s resampled onto %s", case, oriented.describe(), canonical.describe())
        arrays = [
            sitk.GetArrayFromImage(geo.resample_image(img, canonical)) for img in oriented_imgs
        ]
    else:
        arrays = [sitk.GetArrayViewFromImage(img) for img in oriented_imgs]
    keep = [oriented_imgs]  # images whose array views are in use stay alive with them
    classes = given_mask = None
    if read.seg is not None:
        seg_oriented = geo.reorient(read.seg)
        keep.append(seg_oriented)
        classes = labels.to_internal(sitk.GetArrayViewFromImage(seg_oriented), case, read.seg_file)
        if resample:
            classes = geo.resample_labels(classes, oriented, canonical, labels.n_classes)
    if read.mask is not None:
        mask_oriented = sitk.GetArrayViewFromImage(geo.reorient(read.mask)) != 0
        given_mask = mask_oriented
        if resample:
            given_mask = geo.resample_labels(mask_oriented, oriented, canonical, 2) == 1
    return arrays, classes, given_mask, oriented, canonical, resample, keep


def case_brain_mask(case, arrays, given, settings: dict, image_file: str, threads=1):
    """The brain mask: the given mask file, voxels non-zero in any modality, or the
    percentile threshold of :func:`brain_mask`; an (almost) empty brain is an error."""
    if given is not None:
        mask, mode = np.ascontiguousarray(given, dtype=bool), "file"
    else:
        mask, mode = mask_of(arrays, settings["brain_mask"], settings["brain_threshold"], threads)
    n_brain = int(mask.sum())
    if n_brain == 0:
        raise InputError(
            "the brain is empty: no voxel above background in any modality", case, image_file
        )
    if n_brain < 1000:
        raise InputError(f"the brain has only {n_brain} voxels", case, image_file)
    return mask, mode


def _crop_box(case, mask, classes, crop_size, crop_mode):
    start = geo.crop_box(mask.shape, crop_size, crop_mode, mask)
    lost_brain = geo.outside_crop(mask, start, crop_size)
    lost_tumour = 0 if classes is None else geo.outside_crop(classes > 0, start, crop_size)
    if lost_brain:
        log.warning(
            "case %s: %d brain voxels (%.2f%%) lie outside the %sx%s crop",
            case,
            lost_brain,
            100.0 * lost_brain / int(mask.sum()),
            *crop_size,
        )
    if lost_tumour:
        log.warning("case %s: %d tumour voxels lie outside the crop", case, lost_tumour)
    return start, lost_brain, lost_tumour


def _normalised_channel(case, mod, arr, mask_c, brain_frac, start, crop_size, factors, where):
    """z = (x - mean) / std inside the brain, 0 outside; block-averaged. Averaging is
    linear, so it is computed as (mean(x * m) - mean * mean(m)) / std on the blocks, which
    avoids a full-resolution float copy of every modality."""
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
        raise InputError(f"{mod} is constant inside the brain", case, where)
    masked = arr_c * mask_c  # keeps the integer type: no float copy
    block = geo.downsample_mean(masked, factors)
    block -= np.float32(mean) * brain_frac
    block *= np.float32(1.0 / std)
    return block, {"mean": mean, "std": std}


def _slice_table(case, brain_ds, label, labelled: bool, n_classes: int) -> pd.DataFrame:
    """Brain voxels and voxels per class of every slice; for translation (``n_classes``
    0) whether the case has a target."""
    n = brain_ds.shape[0]
    slices = pd.DataFrame(
        {"case": case, "slice": np.arange(n), "brain_voxels": brain_ds.sum(axis=(1, 2))}
    )
    if not n_classes:
        slices["has_target"] = int(labelled)
    for c in range(n_classes):
        counts = (label == c).sum(axis=(1, 2)) if labelled else [pd.NA] * n
        slices[f"voxels_{c}"] = pd.array(counts, dtype="Int64")
    return slices


def _factors(read: CaseImages, settings: dict) -> list[int]:
    if read.stack:
        return [int(v) for v in settings["stack"]["downsample"]] + [1]
    return [int(v) for v in settings["downsample"]]


def preprocess_case(
    case: str, inputs: dict, settings: dict, outputs: dict, threads: int = 1
) -> dict:
    """Preprocess one case and write its arrays, slice index and geometry record.

    ``inputs``: ``images`` ({modality: file}) or ``image`` (a 4D file or a slice-stack
    folder), optional ``seg`` and ``mask``. ``settings``: the rule's preprocessing params
    (see ``workflow/rules/preprocess.smk``). ``outputs``: paths ``image``, ``label``,
    ``slices``, ``geometry``. Returns the geometry record.
    """
    translation = bool(settings.get("target"))
    labels = None if translation else as_label_map(settings["labels"])
    read = read_inputs(case, inputs, settings)
    native = Grid.from_image(read.images[0])
    arrays, classes, given, oriented, canonical, resample, _keep = _to_canonical(
        case, read, settings, labels
    )
    n_inputs = len(settings["modalities"])
    target_arr = arrays[n_inputs] if read.has_target else None
    arrays = arrays[:n_inputs]
    mask, mask_mode = case_brain_mask(case, arrays, given, settings, read.image_file, threads)
    crop_size, start, lost_brain, lost_tumour = _crop_plan(case, read, settings, mask, classes)
    factors = _factors(read, settings)
    mask_c = np.ascontiguousarray(geo.crop(mask, start, crop_size))
    brain_frac = geo.downsample_mean(mask_c, factors)

    def channel(mod_arr):
        mod, arr = mod_arr
        return _normalised_channel(
            case, mod, arr, mask_c, brain_frac, start, crop_size, factors, read.image_file
        )

    def label_channel():
        if target_arr is not None:
            return channel((settings["target"], target_arr))
        if classes is None:
            return None
        cropped = geo.crop(classes, start, crop_size)
        return geo.downsample_labels(cropped, factors, labels.n_classes, labels.priority())

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        label_job = pool.submit(label_channel)
        results = list(pool.map(channel, zip(settings["modalities"], arrays, strict=True)))
        label = label_job.result()
    image = np.stack([r[0] for r in results], axis=-1).astype(np.float16)
    ds_shape = image.shape[:3]
    label, task = _stored_label(label, ds_shape, settings["target"] if translation else None)
    labelled = classes is not None or read.has_target
    n_classes = 0 if translation else labels.n_classes
    slices_df = _slice_table(case, brain_frac > 0, label, labelled, n_classes)
    record = {
        "case": case,
        "modalities": list(settings["modalities"]),
        **task,
        "label_convention": None if translation else labels.convention,
        "label_names": [] if translation else list(labels.names),
        "has_label": classes is not None,
        "stack": read.stack,
        "native": native.to_dict(),
        "native_orientation": native.orientation,
        "oriented": oriented.to_dict(),
        "resampled": bool(resample),
        "canonical": canonical.to_dict(),
        "crop": {"start": [int(v) for v in start], "size": crop_size},
        "downsample": factors,
        "downsampled_shape_zyx": [int(v) for v in ds_shape],
        "brain_mask": mask_mode,
        "brain_voxels": int(mask.sum()),
        "lost_brain_voxels": lost_brain,
        "lost_tumour_voxels": lost_tumour,
        "normalisation": {
            mod: r[1] for mod, r in zip(settings["modalities"], results, strict=True)
        },
    }
    _write_outputs(outputs, image, label, slices_df, record)
    return record


def _crop_plan(case: str, read, settings: dict, mask: np.ndarray, classes):
    """Crop size, start, and the brain and tumour voxels left outside the crop."""
    crop_size = [
        int(v) for v in (settings["stack"]["size"] if read.stack else settings["crop_size"])
    ]
    crop_mode = "center" if read.stack else settings["crop_mode"]
    start, lost_brain, lost_tumour = _crop_box(case, mask, classes, crop_size, crop_mode)
    return crop_size, start, lost_brain, lost_tumour


def _stored_label(label, shape, target: str | None):
    """The label array to store and the record's task entries: a translation ``target``'s
    float16 z-scores (NaN without one), else the classes (UNLABELLED without a label)."""
    if target:
        task = _translation_record(target, label)
        return (label[0].astype(np.float16) if label else np.full(shape, np.nan, np.float16)), task
    if label is None:
        return np.full(shape, UNLABELLED, dtype=np.uint8), {}
    return label, {}


def _translation_record(target: str, result) -> dict:
    """The translation keys of the geometry record: the target and its in-brain stats."""
    record = {"task": "translation", "target": target, "has_target": result is not None}
    if result is not None:
        record["target_normalisation"] = result[1]
    return record


def _write_outputs(outputs: dict, image, label, slices_df: pd.DataFrame, record: dict) -> None:
    """Write the arrays (``label``, or ``target`` for translation), slices and record."""
    _save_npy(outputs["image"], image)
    _save_npy(outputs["target" if "target" in outputs else "label"], label)
    write_tsv(slices_df, outputs["slices"], na_rep="")
    write_json(outputs["geometry"], record)


def _save_npy(path: str, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)


def summarise(geometry_jsons: list[str], slices_tsvs: list[str], out_path: str) -> pd.DataFrame:
    """One row per preprocessed case: native grid, resampling, crop losses and label voxels.

    Cases that lost brain or tumour voxels outside the crop stand out here (and in the report).
    """
    rows = []
    for geom_path, slices_path in zip(geometry_jsons, slices_tsvs, strict=True):
        rec = load_geometry(geom_path)
        slices = read_tsv(slices_path, "slice table")
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
        for col in [c for c in slices.columns if c.startswith("voxels_")][1:]:
            row[col] = slices[col].sum() if rec["has_label"] else pd.NA
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
    write_tsv(df, out_path, na_rep="")
    return df
