"""The forward pass: a model loaded in safe mode, held to the job's threads, gives the
class probabilities (or values) of a preprocessed case; one case predicted end to end."""

from __future__ import annotations

import os
import time

import numpy as np

from tumorseg.errors import InputError
from tumorseg.gpus import claim_gpu, grow_gpu_memory
from tumorseg.inference.export import native_reference, write_case_prediction
from tumorseg.io.grid import load_geometry
from tumorseg.threads import hold_itk, hold_tensorflow


def configure_threads(threads: int, itk_threads: int | None = None) -> None:
    """Hold the step to its compute threads: TensorFlow's pools (``threads`` intra-op, one
    inter-op: the model's layers run one after another) and ITK's (``itk_threads``,
    default ``threads``). On a GPU machine the job takes a GPU slot of its own
    (:func:`tumorseg.gpus.claim_gpu`) and only the GPU memory it uses, so that it never
    takes a training job's memory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    claim_gpu()
    hold_itk(itk_threads or max(1, int(threads)))
    hold_tensorflow(threads, inter_op=1)
    grow_gpu_memory()


def load_model(model_path: str):
    import keras

    from tumorseg.training import models  # noqa: F401  registers the package's serialisable objects

    try:
        return keras.models.load_model(model_path, compile=False, safe_mode=True)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load the model ({err})", path=model_path) from None


def predict_probabilities(model, image: np.ndarray, batch_size: int, windows=None, mirror=()):
    """Class probabilities (z, y, x, C) of every slice of a case, in batches; a 3D model
    (patches) slides its window over the volume (``windows``: ``overlap``, ``gaussian``).
    ``mirror``: batch axes whose mirror images are averaged in
    (:func:`tumorseg.inference.tta.mirrored`; none: one pass)."""
    from tumorseg.inference.tta import mirrored

    call = mirrored(lambda x: np.asarray(model(x, training=False), dtype=np.float32), mirror)
    if len(model.input_shape) == 5:
        from tumorseg.training.sliding_window import predict_volume

        windows = windows or {"overlap": 0.5, "gaussian": True}
        patch_zyx = tuple(int(v) for v in model.input_shape[1:4])
        return predict_volume(
            call,
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
        out.append(call(batch))
    return np.concatenate(out, axis=0)


def forward_case(
    case: str,
    model,
    image_npy: str,
    geometry_json: str,
    reference: str,
    batch_size: int,
    windows: dict | None = None,
    mirror=(),
) -> dict:
    """The model's half of a prediction: the checked geometry record and the class
    probabilities on the preprocessed grid (averaged over ``mirror`` images), with the
    seconds spent."""
    record, image, times = read_case(case, image_npy, geometry_json, reference)
    t1 = time.perf_counter()
    probs = predict_probabilities(model, image, batch_size, windows, mirror)
    times["model"] = time.perf_counter() - t1
    return {"record": record, "probs": probs, "times": times}


def read_case(case: str, image_npy: str, geometry_json: str, reference: str):
    """A preprocessed case's geometry record (checked against its native reference) and
    its image array (memory-mapped), with the seconds spent reading."""
    t0 = time.perf_counter()
    record = load_geometry(geometry_json)
    native_reference(reference, case, record)
    image = np.load(image_npy, mmap_mode="r", allow_pickle=False)
    return record, image, {"read": time.perf_counter() - t0}


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
    mirror=(),
    out_uncertainty: str | None = None,
) -> dict[str, float]:
    """Predict one case and write ``out_seg`` (and optionally ``out_probs`` and the entropy
    map ``out_uncertainty``) on the native grid. Returns the seconds spent reading, in the
    model, inverting and writing."""
    if model is None:
        configure_threads(threads)
        model = load_model(model_path)
    forward = forward_case(
        case, model, image_npy, geometry_json, reference, batch_size, windows, mirror
    )
    return write_case_prediction(
        case, forward, reference, labels, out_seg, out_probs, out_uncertainty
    )
