"""The image-translation task: its inputs, its target and their intensity units.

A translation case's geometry record (``geometry.json``, written by
:mod:`tumorseg.preprocessing.preprocess`) says ``task: translation``, names the ``target`` modality,
whether the case has it (``has_target``) and the target's ``target_normalisation`` (mean
and SD inside the brain); ``normalisation`` holds each input modality's. Every score and
picture is in the target's z-score units: :func:`zscore` with those statistics, 0 outside
the brain. Used by :mod:`tumorseg.evaluation.translation` (the scores) and
:mod:`tumorseg.evaluation.views` (the pictures' panels); training writes the target scale
(:func:`write_target_scale`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tumorseg.errors import InputError
from tumorseg.io.grid import load_geometry
from tumorseg.io.tables import write_json


def read_record(case: str, geometry_json: str) -> dict:
    """The geometry record of a translation case that has a target, or :class:`InputError`."""
    record = load_geometry(geometry_json, case)
    if record.get("task", "translation") != "translation":
        raise InputError(
            f"the geometry record is of task {record['task']!r}, not translation",
            case,
            geometry_json,
        )
    if record.get("has_target") is False:
        raise InputError("the case has no target image: nothing to score", case, geometry_json)
    return record


def norm_stats(case: str, record: dict, key: str | None, where: str) -> tuple[float, float]:
    """(mean, std) of the record's target (``key=None``) or input modality ``key``."""
    try:
        stats = record["target_normalisation"] if key is None else record["normalisation"][key]
        mean, std = float(stats["mean"]), float(stats["std"])
    except (KeyError, TypeError, ValueError):
        what = "target_normalisation" if key is None else f"normalisation of {key}"
        raise InputError(f"the geometry record lacks a valid {what}", case, where) from None
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise InputError(f"bad normalisation statistics mean {mean}, std {std}", case, where)
    return mean, std


def input_names(record: dict, inputs: list[str] | None = None) -> list[str]:
    """The input modalities' names: ``inputs``, else the record's ``inputs``, else its
    ``modalities`` (the target left out), else its normalised modalities."""
    names = list(inputs or record.get("inputs") or record.get("modalities") or [])
    names = [n for n in names if n != record.get("target")]
    if not names:
        names = list(record.get("normalisation") or [])
    if not names:
        raise InputError("the geometry record names no input modality", record.get("case"))
    return names


def first_input(record: dict, inputs: list[str] | None = None) -> str:
    """The name of the first input modality (the baseline), see :func:`input_names`."""
    return input_names(record, inputs)[0]


def zscore(arr: np.ndarray, mean: float, std: float, mask: np.ndarray) -> np.ndarray:
    """``(arr - mean) / std`` inside ``mask``, 0 outside (float64)."""
    return np.where(mask, (np.asarray(arr, dtype=np.float64) - mean) / std, 0.0)


def write_target_scale(preprocessed_dir: str, cases: list[str], out_path: str) -> dict:
    """The training data's target intensity scale: the mean over the training cases of
    their in-brain target mean and SD (from their geometry records). Prediction maps
    z-scores back with it when ``translation.rescale_output`` is on."""
    stats = [
        load_geometry(Path(preprocessed_dir) / c / "geometry.json")["target_normalisation"]
        for c in cases
    ]
    scale = {
        "mean": float(sum(s["mean"] for s in stats) / len(stats)),
        "std": float(sum(s["std"] for s in stats) / len(stats)),
        "cases": len(stats),
    }
    write_json(out_path, scale)
    return scale
