"""Image translation: the synthetic target of a case, from the forward pass to its native
grid."""

from __future__ import annotations

from tumorseg.inference.export import write_translation
from tumorseg.inference.predict import configure_threads, forward_case, load_model


def forward_translation_case(
    case: str, model, image_npy: str, geometry_json: str, inputs: list[str], batch_size: int
) -> dict:
    """The model's half of a synthesis: the checked record and the z-scored values on the
    preprocessed grid (:func:`tumorseg.inference.predict.forward_case`'s one output channel)."""
    forward = forward_case(case, model, image_npy, geometry_json, inputs[0], batch_size)
    return {
        "record": forward["record"],
        "values": forward["probs"][..., 0],
        "times": forward["times"],
    }


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
