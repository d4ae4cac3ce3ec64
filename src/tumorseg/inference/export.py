"""The way back to native space and its checks: a case's predicted classes or values on
its native grid, written and compared with the input file as a viewer reads both."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from tumorseg.errors import InputError
from tumorseg.inference.tta import entropy, region_entropy
from tumorseg.io import slices
from tumorseg.io.atomic import atomic_path
from tumorseg.io.grid import GRID_TOLERANCE, Grid
from tumorseg.io.tables import read_json
from tumorseg.preprocessing import geometry as geo
from tumorseg.tasks.labels import as_label_map

log = logging.getLogger("tumorseg")


def native_reference(reference: str, case: str, record: dict) -> Grid:
    """The native grid of the case's input file, checked against the geometry record."""
    if slices.is_stack(reference):
        grid = slices.grid_of_stack(reference, case)
    elif not Path(reference).is_file():
        raise InputError("reference image not found", case, reference)
    else:
        try:
            grid = Grid.from_file(reference)
        except RuntimeError:
            raise InputError("cannot read the reference image's header", case, reference) from None
    recorded = Grid.from_dict(record["native"])
    if not grid.same_as(recorded):
        raise InputError(
            f"the input is on {grid.describe()}, but it was preprocessed on "
            f"{recorded.describe()}; rerun preprocessing",
            case,
            reference,
        )
    return grid


def write_segmentation(
    classes: sitk.Image, reference: str, case: str, labels, out_path: str, slice_files=True
) -> None:
    """Write a native-grid class map in the dataset's label values and check that the
    written file lies on the reference's grid; raise otherwise. A slice-stack reference
    gets a folder of ``<id>_<k>_mask.tif`` (0/255) instead, unless ``slice_files`` is
    false (then one NIfTI on the stack grid)."""
    labels = as_label_map(labels)
    array = sitk.GetArrayViewFromImage(classes)
    stack = slices.is_stack(reference)
    if stack and slice_files:
        slices.write_stack_masks(labels.from_internal(array, 255), reference, out_path, case)
        return
    out = sitk.GetImageFromArray(labels.from_internal(array))
    out.CopyInformation(classes)
    with atomic_path(out_path) as tmp:
        sitk.WriteImage(out, str(tmp), useCompression=True)
        if not stack:
            check_written(tmp, reference, case, Grid.from_image(classes))


def check_written(written: str | Path, reference: str, case: str, grid=None) -> None:
    """Compare shape and affine of a written NIfTI with the reference, as a viewer sees
    them: through nibabel's reading of both files when the reference is NIfTI, else
    against the reference's grid as SimpleITK reads it (MINC, MHA, NRRD)."""
    got = nib.load(str(written))
    if str(reference).endswith((".nii", ".nii.gz")):
        ref = nib.load(str(reference))
        ref_shape, ref_affine = ref.shape[:3], ref.affine
    else:
        grid = grid if grid is not None else Grid.from_file(reference)
        ref_shape, ref_affine = grid.shape_zyx[::-1], grid.affine_ras()
    if got.shape[:3] != tuple(ref_shape):
        raise geo.GeometryError(
            f"case {case}: written shape {got.shape} differs from the input's {ref_shape}"
        )
    if not np.allclose(got.affine, ref_affine, atol=GRID_TOLERANCE):
        raise geo.GeometryError(
            f"case {case}: written affine\n{got.affine}\ndiffers from the input's\n{ref_affine}"
        )


def write_case_prediction(
    case: str,
    forward: dict,
    reference: str,
    labels,
    out_seg: str,
    out_probs=None,
    out_uncertainty=None,
) -> dict[str, float]:
    """The way back: probabilities to the native grid, argmax, dataset labels, written
    and checked (with ``out_uncertainty``, also the entropy of the native-grid
    probabilities as float32); logs and returns the seconds of every part."""
    times = dict(forward["times"])
    t0 = time.perf_counter()
    probs, decode, uncertainty = forward["probs"], None, entropy
    label_map = as_label_map(labels)
    if probs.shape[-1] != label_map.n_classes:  # a region model: one sigmoid per region
        probs, decode = region_channels(probs, label_map, case)
        uncertainty = region_entropy
    classes, native_probs = geo.probabilities_to_native(
        probs, forward["record"], bool(out_probs or out_uncertainty), decode
    )
    if decode is not None and native_probs is not None:
        native_probs = native_probs[..., 1:]  # the regions, without the stand-in channel
    times["inversion"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_segmentation(classes, reference, case, labels, out_seg)
    if out_probs:
        img = sitk.GetImageFromArray(native_probs, isVector=True)
        img.CopyInformation(classes)
        with atomic_path(out_probs) as tmp:
            sitk.WriteImage(img, str(tmp), useCompression=True)
    if out_uncertainty:
        write_float_map(uncertainty(native_probs), classes, reference, case, out_uncertainty)
    times["write"] = time.perf_counter() - t0
    log.info("case %s: predicted in %s", case, describe_times(times))
    return times


def region_channels(probs: np.ndarray, labels, case: str):
    """A region model's probabilities (..., R) as the way back takes them: a stand-in
    background channel first (the resampling fills channel 0 with 1 outside the crop, the
    regions with 0), and the decoder that thresholds each region at 0.5 and paints the
    classes larger regions first (:meth:`LabelMap.regions_to_classes`)."""
    if probs.shape[-1] != len(labels.regions):
        raise InputError(
            f"the model gives {probs.shape[-1]} outputs; the {labels.convention} label map "
            f"has {labels.n_classes} classes and {len(labels.regions)} regions",
            case,
        )
    labels.region_painting()  # the regions nest, or a clear error
    stand_in = 1.0 - probs.max(axis=-1, keepdims=True)
    return (
        np.concatenate([stand_in, probs], axis=-1),
        lambda p: labels.regions_to_classes(p[..., 1:]),
    )


def write_float_map(values, grid_image: sitk.Image, reference: str, case: str, out_path: str):
    """A float32 map (z, y, x) on ``grid_image``'s native grid as NIfTI, checked against the
    reference like a segmentation (a slice stack's map is one NIfTI on the stack grid)."""
    out = sitk.GetImageFromArray(np.asarray(values, dtype=np.float32))
    out.CopyInformation(grid_image)
    with atomic_path(out_path) as tmp:
        sitk.WriteImage(out, str(tmp), useCompression=True)
        if not slices.is_stack(reference):
            check_written(tmp, reference, case, Grid.from_image(grid_image))


def describe_times(times: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f} s" for k, v in times.items())


def native_brain(case: str, inputs: list[str], record: dict, mask_path=None, threshold=0.01):
    """The brain mask on the native grid, by the rule preprocessing used for the case (its
    ``brain_mask`` mode, or the given mask file), from the native input files."""
    from tumorseg.io.images import read_image
    from tumorseg.preprocessing.brainmask import mask_of

    if record.get("brain_mask") == "file" or mask_path:
        if not mask_path:
            raise InputError("the case was preprocessed with a mask file; none was given", case)
        return sitk.GetArrayFromImage(read_image(mask_path, case, "mask")) != 0
    images = [read_image(p, case, mod) for p, mod in zip(inputs, record["modalities"], strict=True)]
    arrays = [sitk.GetArrayViewFromImage(img) for img in images]
    mask, _ = mask_of(arrays, record.get("brain_mask", "threshold"), threshold)
    return mask


def write_intensity(values: sitk.Image, reference: str, case: str, out_path: str) -> None:
    """Write a float32 image on the native grid and check it against the reference."""
    values = sitk.Cast(values, sitk.sitkFloat32)
    with atomic_path(out_path) as tmp:
        sitk.WriteImage(values, str(tmp), useCompression=True)
        check_written(tmp, reference, case, Grid.from_image(values))


def to_native_intensity(values_ds, record, brain, scale=None) -> sitk.Image:
    """Values on the preprocessed grid back on the native grid, 0 outside the native brain
    mask ``brain``; with ``scale`` (mean, std) in the training data's target intensities."""
    img = geo.values_to_native(np.asarray(values_ds, dtype=np.float32), record)
    arr = sitk.GetArrayFromImage(img)
    if arr.shape != brain.shape:
        raise geo.GeometryError(f"brain mask {brain.shape} differs from the image {arr.shape}")
    if scale is not None:  # back to the training data's target intensities
        arr = arr * np.float32(scale["std"]) + np.float32(scale["mean"])
    arr[~brain] = 0.0
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    return out


def write_translation(
    case: str,
    forward: dict,
    inputs: list[str],
    out_path: str,
    mask_path: str | None = None,
    brain_threshold: float = 0.01,
    scale_json: str | None = None,
) -> dict[str, float]:
    """The way back of a synthesis: the native brain mask, the values on the native grid
    (optionally rescaled), written as float32 and checked."""
    times = dict(forward["times"])
    t0 = time.perf_counter()
    record = forward["record"]
    brain = native_brain(case, inputs, record, mask_path, brain_threshold)
    scale = read_json(scale_json, "target scale", case) if scale_json else None
    out = to_native_intensity(forward["values"], record, brain, scale)
    times["inversion"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_intensity(out, inputs[0], case, out_path)
    times["write"] = time.perf_counter() - t0
    log.info("case %s: synthesised in %s", case, describe_times(times))
    return times
