"""Batch jobs of prediction: one process, one model loaded once, the next case's forward
pass overlapping the previous case's way back and write."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tumorseg.batches import run_batch
from tumorseg.inference.ensemble import average, members_for
from tumorseg.inference.export import write_case_prediction, write_translation
from tumorseg.inference.predict import (
    configure_threads,
    forward_case,
    load_model,
    predict_probabilities,
    read_case,
)
from tumorseg.inference.synthesis import forward_translation_case
from tumorseg.threads import split_threads

log = logging.getLogger("tumorseg")


def model_batch(
    cases: list[dict],
    model_paths: list[str],
    forward: Callable,
    write: Callable,
    threads: int,
    case_logs: dict[str, str] | None,
    overlap: bool | None,
    verb: str,
) -> None:
    """A batch of cases through models loaded once: ``forward(models, case_dict)`` on this
    thread, ``write(case_dict, result)`` in a second one overlapping the next case's
    forward pass (``overlap``, threads split by :func:`split_threads`)."""
    overlap, tf_threads, itk_threads = split_threads(threads, overlap)
    configure_threads(tf_threads, itk_threads)
    models = [load_model(path) for path in model_paths]
    by_id = {c["case"]: c for c in cases}
    log.info(
        "%s %d cases with %s: %d threads (TensorFlow %d, way back %d, %s)",
        verb, len(cases), ", ".join(model_paths), threads, tf_threads, itk_threads,
        "overlapped" if overlap else "one after another",
    )  # fmt: skip
    run_batch(
        list(by_id),
        lambda case: forward(models, by_id[case]),
        lambda case, result: write(by_id[case], result),
        case_logs,
        overlap,
    )


def predict_batch(
    cases: list[dict],
    model_path: str | list[dict],
    labels,
    batch_size: int,
    windows: dict | None = None,
    threads: int = 2,
    case_logs: dict[str, str] | None = None,
    overlap: bool | None = None,
    mirror=(),
    folds: dict[str, int] | None = None,
) -> None:
    """Predict a batch of cases with the model (or the ensemble's models) loaded once.
    ``cases``: one dict per case with ``case``, ``image_npy``, ``geometry_json``,
    ``reference``, ``out_seg`` and optionally ``out_probs`` and ``out_uncertainty``;
    ``mirror``: the batch axes of test-time mirroring (:mod:`tumorseg.inference.tta`).

    ``model_path``: one model's file, or an ensemble's members (dicts with ``name``,
    ``fold``, ``path``, ``windows`` and ``mirror``, :mod:`tumorseg.inference.ensemble`), in
    which case ``folds`` gives each case's fold (-1 or absent: outside the folds).

    The model runs on the next case while the previous one goes back to native space in a
    second thread (``overlap``, see :func:`split_threads`); the outputs are the same as
    :func:`predict_case`'s, case by case."""
    if isinstance(model_path, str):
        return _predict_one_model(
            cases, model_path, labels, batch_size, windows, threads, case_logs, overlap, mirror
        )
    members = model_path
    folds = folds or {}

    def forward(models, c):
        return forward_ensemble_case(models, members, c, folds.get(c["case"], -1), batch_size)

    def write(c, result):
        write_case_prediction(
            c["case"], result, c["reference"], labels, c["out_seg"], c.get("out_probs"),
            c.get("out_uncertainty"),
        )  # fmt: skip

    mirrored = sorted({m["path"] for m in members if m["mirror"]})
    if mirrored:
        log.info("test-time mirroring of %s", ", ".join(mirrored))
    paths = [m["path"] for m in members]
    model_batch(cases, paths, forward, write, threads, case_logs, overlap, "predicting")
    return None


def forward_ensemble_case(models, members: list[dict], c: dict, fold: int, batch_size: int):
    """An ensemble's half of a prediction (:func:`tumorseg.inference.predict.forward_case`'s
    result): the members that predict a case of ``fold`` (-1: outside the folds), each with
    its own sliding window and mirroring, averaged (:mod:`tumorseg.inference.ensemble`)."""
    record, image, times = read_case(c["case"], c["image_npy"], c["geometry_json"], c["reference"])
    t0 = time.perf_counter()
    chosen = members_for(members, fold)
    probs = average(
        members,
        chosen,
        lambda i: predict_probabilities(
            models[i], image, batch_size, members[i]["windows"], members[i]["mirror"]
        ),
    )
    log.info(
        "case %s: %s %s", c["case"],
        f"fold {fold}, out of fold with" if fold >= 0 else "the average of",
        ", ".join(members[i]["path"] for i in chosen),
    )  # fmt: skip
    times["model"] = time.perf_counter() - t0
    return {"record": record, "probs": probs, "times": times}


def _predict_one_model(
    cases, model_path, labels, batch_size, windows, threads, case_logs, overlap, mirror
) -> None:
    def forward(models, c):
        return forward_case(
            c["case"], models[0], c["image_npy"], c["geometry_json"], c["reference"],
            batch_size, windows, mirror,
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
    model_batch(cases, [model_path], forward, write, threads, case_logs, overlap, "predicting")


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

    def forward(models, c):
        return forward_translation_case(
            c["case"], models[0], c["image_npy"], c["geometry_json"], c["inputs"], batch_size
        )

    def write(c, result):
        write_translation(
            c["case"], result, c["inputs"], c["out_path"], c.get("mask_path"),
            brain_threshold, scale_json,
        )  # fmt: skip

    model_batch(cases, [model_path], forward, write, threads, case_logs, overlap, "synthesising")
