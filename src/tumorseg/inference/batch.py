"""Batch jobs of prediction: one process, one model loaded once, the next case's forward
pass overlapping the previous case's way back and write."""

from __future__ import annotations

import logging
from collections.abc import Callable

from tumorseg.batches import run_batch
from tumorseg.inference.export import write_case_prediction, write_translation
from tumorseg.inference.predict import configure_threads, forward_case, load_model
from tumorseg.inference.synthesis import forward_translation_case
from tumorseg.threads import split_threads

log = logging.getLogger("tumorseg")


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


def predict_batch(
    cases: list[dict],
    model_path: str,
    labels,
    batch_size: int,
    windows: dict | None = None,
    threads: int = 2,
    case_logs: dict[str, str] | None = None,
    overlap: bool | None = None,
    mirror=(),
) -> None:
    """Predict a batch of cases with one model loaded once. ``cases``: one dict per case
    with ``case``, ``image_npy``, ``geometry_json``, ``reference``, ``out_seg`` and
    optionally ``out_probs`` and ``out_uncertainty``; ``mirror``: the batch axes of
    test-time mirroring (:mod:`tumorseg.inference.tta`). The model runs on the next case
    while the previous one goes back to native space in a second thread (``overlap``, see
    :func:`split_threads`); the outputs are the same as :func:`predict_case`'s, case by
    case."""

    def forward(model, c):
        return forward_case(
            c["case"], model, c["image_npy"], c["geometry_json"], c["reference"], batch_size,
            windows, mirror,
        )  # fmt: skip

    def write(c, result):
        write_case_prediction(
            c["case"], result, c["reference"], labels, c["out_seg"], c.get("out_probs"),
            c.get("out_uncertainty"),
        )  # fmt: skip

    if mirror:
        log.info(
            "test-time mirroring along batch axes %s: %d passes a batch", mirror, 2 ** len(mirror)
        )
    model_batch(cases, model_path, forward, write, threads, case_logs, overlap, "predicting")


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
