"""Image translation: the synthetic target of a case, from the forward pass to its native
grid."""

from __future__ import annotations

import time

import numpy as np

from tumorseg.inference.export import native_reference, write_translation
from tumorseg.inference.predict import configure_threads, load_model, predict_probabilities
from tumorseg.io.grid import load_geometry


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
