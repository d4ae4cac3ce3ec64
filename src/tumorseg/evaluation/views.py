"""What a run's case pictures show, loaded from the native-grid files through the checked
readers: for segmentation an axial slice through the lesion (image, reference, prediction
as the label map's classes), for translation axial slices at fractions of the brain's
extent (input, synthetic and real target in z-score units, their error). Both cropped to
the brain; :mod:`tumorseg.report.figures` draws them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tumorseg.errors import InputError
from tumorseg.tasks.labels import LabelMap

#: where the translation pictures' slices lie in the brain's axial extent
SLICE_FRACTIONS = (0.3, 0.5, 0.7)


def read_array(path: str | Path, case: str, role: str = "image"):
    """``(image, array)`` of an image file or a slice-stack folder (its masks for a label,
    its first channel for an image); a 4D or vector image gives its first channel."""
    import SimpleITK as sitk

    from tumorseg.io import slices
    from tumorseg.io.images import read_image

    if slices.is_stack(path):
        if role == "image":
            image = slices.read_stack_channel(path, case, 0)
        else:
            image = slices.read_stack_masks(path, case)
    else:
        image = read_image(path, case, role, first_channel=role == "image")
    return image, sitk.GetArrayFromImage(image)


def mask_box(keep: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The box around the true pixels of the 2D ``keep``, plus a margin (all if none)."""
    if not keep.any():
        return slice(None), slice(None)
    box = []
    for axis in (0, 1):
        hits = np.flatnonzero(keep.any(axis=1 - axis))
        box.append(slice(max(hits[0] - margin, 0), min(hits[-1] + 1 + margin, keep.shape[axis])))
    return tuple(box)


def _crop_box(image: np.ndarray, *masks: np.ndarray, margin: int = 4) -> tuple[slice, slice]:
    """In-plane box around the non-zero image (the brain) and the masks, plus a margin."""
    keep = (image != 0) & np.isfinite(image)
    for mask in masks:
        keep = keep | mask
    return mask_box(keep, margin)


def overlay_view(case: str, paths: dict, labels: LabelMap) -> dict:
    """The case's slice to show: through the lesion (most reference foreground voxels, else
    most predicted ones), cropped to the brain; image, reference and prediction classes, and
    the entropy map where ``paths`` has an "uncertainty" file. ``paths``: the case's
    "image", "ref" and "pred" files (and "uncertainty") on its native grid."""
    _, image = read_array(paths["image"], case)
    ref_img, ref_raw = read_array(paths["ref"], case, "reference")
    _, pred_raw = read_array(paths["pred"], case, "prediction")
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
    view = {
        "z": z,
        "aspect": sy / sx,
        "image": image[z][box],
        "reference": ref[z][box],
        "prediction": pred[z][box],
    }
    if paths.get("uncertainty"):
        _, entropy = read_array(paths["uncertainty"], case, "uncertainty map")
        if entropy.shape != image.shape:
            raise InputError(
                f"uncertainty map {entropy.shape} and image {image.shape} differ in shape",
                case,
                paths["uncertainty"],
            )
        view["uncertainty"] = entropy[z][box].astype(np.float32)
    return view


# --------------------------------------------------------------------------- translation


def _lps_array(path: str, case: str, role: str):
    import SimpleITK as sitk

    from tumorseg.io.images import read_image

    img = sitk.DICOMOrient(read_image(path, case, role), "LPS")
    return sitk.GetArrayFromImage(img).astype(np.float64), img.GetSpacing()


def load_translation_case(case: str, paths: dict) -> dict:
    """The case's input, synthetic and real images (LPS, z-scores, 0 outside the brain)."""
    from tumorseg.tasks.translation import first_input, norm_stats, read_record, zscore

    missing = [k for k in ("input", "pred", "target", "geometry") if not paths.get(k)]
    if missing:
        raise InputError(f"figure inputs lack {missing}", case)
    record = read_record(case, paths["geometry"])
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
    mean, std = norm_stats(case, record, name, paths["geometry"])
    t_mean, t_std = norm_stats(case, record, None, paths["geometry"])
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


def _brain_window(*images, brain) -> tuple[float, float]:
    values = np.concatenate([im[brain] for im in images])
    if values.size == 0:
        return -2.0, 2.0
    lo, hi = np.percentile(values, [0.5, 99.5])
    return float(lo), float(max(hi, lo + 1e-6))


def translation_panels(data: dict) -> dict:
    """The shown slices of a loaded case (:func:`load_translation_case`; cropped to the
    brain), its grey window and error scale, so that the volumes can be dropped before the
    next case is read."""
    brain = data["brain"]
    error = np.abs(data["pred"] - data["real"])
    lo, hi = _brain_window(data["input"], data["pred"], data["real"], brain=brain)
    err_max = float(np.percentile(error[brain], 99.5)) if brain.any() else 1.0
    box = mask_box(brain.any(axis=0), margin=3)
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
