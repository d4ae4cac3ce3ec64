"""Prediction of one case and its way back to the native grid, written as NIfTI."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from tumorseg.batches import for_each_case, run_batch
from tumorseg.errors import InputError
from tumorseg.io import slices
from tumorseg.io.atomic import atomic_path
from tumorseg.io.grid import GRID_TOLERANCE, Grid, load_geometry
from tumorseg.io.tables import read_json
from tumorseg.preprocessing import geometry as geo
from tumorseg.tasks.labels import as_label_map
from tumorseg.threads import hold_itk, hold_tensorflow, split_threads

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


def configure_threads(threads: int, itk_threads: int | None = None) -> None:
    """Hold the step to its compute threads: TensorFlow's pools (``threads`` intra-op, one
    inter-op: the model's layers run one after another) and ITK's (``itk_threads``,
    default ``threads``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    hold_itk(itk_threads or max(1, int(threads)))
    hold_tensorflow(threads, inter_op=1)


def load_model(model_path: str):
    import keras

    from tumorseg.training import models  # noqa: F401  registers the package's serialisable objects

    try:
        return keras.models.load_model(model_path, compile=False, safe_mode=True)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load the model ({err})", path=model_path) from None


def predict_probabilities(model, image: np.ndarray, batch_size: int, windows=None):
    """Class probabilities (z, y, x, C) of every slice of a case, in batches; a 3D model
    (patches) slides its window over the volume (``windows``: ``overlap``, ``gaussian``)."""
    if len(model.input_shape) == 5:
        from tumorseg.inference.sliding_window import predict_volume

        windows = windows or {"overlap": 0.5, "gaussian": True}
        patch_zyx = tuple(int(v) for v in model.input_shape[1:4])
        return predict_volume(
            lambda x: np.asarray(model(x, training=False), dtype=np.float32),
            np.asarray(image, dtype=np.float32),
            patch_zyx[::-1],
            int(model.output_shape[-1]),
            overlap=float(windows["overlap"]),
            gaussian=bool(windows["gaussian"]),
            batch_size=max(1, batch_size // patch_zyx[0]),
        )
    out = []
    for start in range(0, image.shape[0], batch_size):
        batch = np.asarray(image[start : start + batch_size], dtype=np.float32)
        out.append(np.asarray(model(batch, training=False), dtype=np.float32))
    return np.concatenate(out, axis=0)


def forward_case(
    case: str,
    model,
    image_npy: str,
    geometry_json: str,
    reference: str,
    batch_size: int,
    windows: dict | None = None,
) -> dict:
    """The model's half of a prediction: the checked geometry record and the class
    probabilities on the preprocessed grid, with the seconds spent."""
    t0 = time.perf_counter()
    record = load_geometry(geometry_json)
    native_reference(reference, case, record)
    image = np.load(image_npy, mmap_mode="r", allow_pickle=False)
    t1 = time.perf_counter()
    probs = predict_probabilities(model, image, batch_size, windows)
    times = {"read": t1 - t0, "model": time.perf_counter() - t1}
    return {"record": record, "probs": probs, "times": times}


def write_case_prediction(
    case: str, forward: dict, reference: str, labels, out_seg: str, out_probs=None
) -> dict[str, float]:
    """The way back: probabilities to the native grid, argmax, dataset labels, written
    and checked; logs and returns the seconds of every part."""
    times = dict(forward["times"])
    t0 = time.perf_counter()
    classes, native_probs = geo.probabilities_to_native(
        forward["probs"], forward["record"], keep_probs=bool(out_probs)
    )
    times["inversion"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_segmentation(classes, reference, case, labels, out_seg)
    if out_probs:
        img = sitk.GetImageFromArray(native_probs, isVector=True)
        img.CopyInformation(classes)
        with atomic_path(out_probs) as tmp:
            sitk.WriteImage(img, str(tmp), useCompression=True)
    times["write"] = time.perf_counter() - t0
    log.info("case %s: predicted in %s", case, _describe(times))
    return times


def _describe(times: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f} s" for k, v in times.items())


def predict_case(
    case: str,
    model_path: str,
    image_npy: str,
    geometry_json: str,
    reference: str,
    labels,
    batch_size: int,
    out_seg: str,
    out_probs: str | None = None,
    threads: int = 2,
    model=None,
    windows: dict | None = None,
) -> dict[str, float]:
    """Predict one case and write ``out_seg`` (and optionally ``out_probs``) on the native
    grid. Returns the seconds spent reading, in the model, inverting and writing."""
    if model is None:
        configure_threads(threads)
        model = load_model(model_path)
    forward = forward_case(case, model, image_npy, geometry_json, reference, batch_size, windows)
    return write_case_prediction(case, forward, reference, labels, out_seg, out_probs)


def predict_batch(
    cases: list[dict],
    model_path: str,
    labels,
    batch_size: int,
    windows: dict | None = None,
    threads: int = 2,
    case_logs: dict[str, str] | None = None,
    overlap: bool | None = None,
) -> None:
    """Predict a batch of cases with one model loaded once. ``cases``: one dict per case
    with ``case``, ``image_npy``, ``geometry_json``, ``reference``, ``out_seg`` and
    optionally ``out_probs``. The model runs on the next case while the previous one goes
    back to native space in a second thread (``overlap``, see :func:`split_threads`); the
    outputs are the same as :func:`predict_case`'s, case by case."""

    def forward(model, c):
        return forward_case(
            c["case"], model, c["image_npy"], c["geometry_json"], c["reference"], batch_size,
            windows,
        )  # fmt: skip

    def write(c, result):
        write_case_prediction(
            c["case"], result, c["reference"], labels, c["out_seg"], c.get("out_probs")
        )

    model_batch(cases, model_path, forward, write, threads, case_logs, overlap, "predicting")


def model_batch(
    cases: list[dict],
    model_path: str,
    forward: Callable,
    write: Callable,
    threads: int,
    case_logs: dict[str, str] | None,
    overlap: bool | None,
    verb: str,
) -> None:
    """A batch of cases through one model loaded once: ``forward(model, case_dict)`` on
    this thread, ``write(case_dict, result)`` in a second one overlapping the next case's
    forward pass (``overlap``, threads split by :func:`split_threads`)."""
    overlap, tf_threads, itk_threads = split_threads(threads, overlap)
    configure_threads(tf_threads, itk_threads)
    model = load_model(model_path)
    by_id = {c["case"]: c for c in cases}
    log.info(
        "%s %d cases with %s: %d threads (TensorFlow %d, way back %d, %s)",
        verb, len(cases), model_path, threads, tf_threads, itk_threads,
        "overlapped" if overlap else "one after another",
    )  # fmt: skip
    run_batch(
        list(by_id),
        lambda case: forward(model, by_id[case]),
        lambda case, result: write(by_id[case], result),
        case_logs,
        overlap,
    )


def ceiling_batch(cases: list[dict], labels, threads: int = 1, case_logs=None) -> None:
    """:func:`ceiling_case` for a batch of cases (dicts of its arguments) in one process."""
    hold_itk(max(1, int(threads)))
    for_each_case(cases, ceiling_case, case_logs, labels=labels)


def ceiling_case(
    case: str, label_npy: str, geometry_json: str, reference: str, labels, out_seg: str
) -> None:
    """The reference label after downsampling, sent back through the same inversion.
    Always written as NIfTI (for a slice stack: on its stack grid)."""
    labels = as_label_map(labels)
    record = load_geometry(geometry_json)
    if not record["has_label"]:
        raise InputError("the case has no label, so it has no resolution ceiling", case)
    native_reference(reference, case, record)
    label = np.load(label_npy, allow_pickle=False)
    classes = geo.labels_to_native(label, record, labels.n_classes)
    write_segmentation(classes, reference, case, labels, out_seg, slice_files=False)


# ------------------------------------------------------------------ image translation


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


def _to_native_intensity(values_ds, record, brain, scale=None) -> sitk.Image:
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


def forward_translation_case(
    case: str, model, image_npy: str, geometry_json: str, inputs: list[str], batch_size: int
) -> dict:
    """The model's half of a synthesis: the checked record and the z-scored values on the
    preprocessed grid."""
    t0 = time.perf_counter()
    record = load_geometry(geometry_json)
    native_reference(inputs[0], case, record)
    image = np.load(image_npy, mmap_mode="r", allow_pickle=False)
    t1 = time.perf_counter()
    values = predict_probabilities(model, image, batch_size)[..., 0]
    times = {"read": t1 - t0, "model": time.perf_counter() - t1}
    return {"record": record, "values": values, "times": times}


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
    out = _to_native_intensity(forward["values"], record, brain, scale)
    times["inversion"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_intensity(out, inputs[0], case, out_path)
    times["write"] = time.perf_counter() - t0
    log.info("case %s: synthesised in %s", case, _describe(times))
    return times


def predict_translation_case(
    case: str,
    model_path: str,
    image_npy: str,
    geometry_json: str,
    inputs: list[str],
    batch_size: int,
    out_path: str,
    mask_path: str | None = None,
    brain_threshold: float = 0.01,
    scale_json: str | None = None,
    threads: int = 2,
    model=None,
) -> dict[str, float]:
    """Synthesise the target of one case and write it on the native grid of its first
    input (float32, target z-scores inside the brain, 0 outside; with ``scale_json`` the
    training data's target intensities)."""
    if model is None:
        configure_threads(threads)
        model = load_model(model_path)
    forward = forward_translation_case(case, model, image_npy, geometry_json, inputs, batch_size)
    return write_translation(
        case, forward, inputs, out_path, mask_path, brain_threshold, scale_json
    )


def predict_translation_batch(
    cases: list[dict],
    model_path: str,
    batch_size: int,
    brain_threshold: float = 0.01,
    scale_json: str | None = None,
    threads: int = 2,
    case_logs: dict[str, str] | None = None,
    overlap: bool | None = None,
) -> None:
    """:func:`predict_translation_case` for a batch of cases (dicts with ``case``,
    ``image_npy``, ``geometry_json``, ``inputs``, ``out_path`` and optionally
    ``mask_path``), the model loaded once and the way back overlapping the next case."""

    def forward(model, c):
        return forward_translation_case(
            c["case"], model, c["image_npy"], c["geometry_json"], c["inputs"], batch_size
        )

    def write(c, result):
        write_translation(
            c["case"], result, c["inputs"], c["out_path"], c.get("mask_path"),
            brain_threshold, scale_json,
        )  # fmt: skip

    model_batch(cases, model_path, forward, write, threads, case_logs, overlap, "synthesising")


def translation_ceiling_case(
    case: str,
    target_npy: str,
    geometry_json: str,
    inputs: list[str],
    out_path: str,
    mask_path: str | None = None,
    brain_threshold: float = 0.01,
) -> None:
    """The real target after preprocessing, sent back to native space like a prediction."""
    record = load_geometry(geometry_json)
    if not record.get("has_target"):
        raise InputError("the case has no target, so it has no resolution ceiling", case)
    native_reference(inputs[0], case, record)
    brain = native_brain(case, inputs, record, mask_path, brain_threshold)
    target = np.load(target_npy, allow_pickle=False)
    write_intensity(_to_native_intensity(target, record, brain), inputs[0], case, out_path)


def translation_ceiling_batch(
    cases: list[dict], brain_threshold: float = 0.01, threads: int = 1, case_logs=None
) -> None:
    """:func:`translation_ceiling_case` for a batch of cases in one process."""
    hold_itk(max(1, int(threads)))
    for_each_case(cases, translation_ceiling_case, case_logs, brain_threshold=brain_threshold)
