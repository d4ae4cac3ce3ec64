"""Ensembles: which member models predict a case, and how their probabilities are averaged
(pure; the models are called through :func:`tumorseg.inference.predict.predict_probabilities`).

An ensemble run (``<model>.ensemble`` with ``split.cv_folds >= 2``, or an entry of
``ensembles``) has members: one per model and fold, ``{"name", "fold", ...}`` with ``fold``
``None`` for a model trained without folds. As nnU-Net does:

* a case outside the folds (test and predict rows, fold ``-1``) is predicted by every member:
  each model's fold models are averaged, then the models (so every architecture weighs the
  same whatever its number of folds);
* a case of fold ``f`` (a training case of the cross-validation) is predicted *out of fold*:
  by each model's fold-``f`` member only, the one model that did not train on it (and a
  member without folds). The ensemble's scores on those cases are its cross-validation
  results, on which the post-processing and the ensemble of architectures are chosen.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def members_for(members: list[dict], fold: int) -> list[int]:
    """Indexes of the ``members`` that predict a case of ``fold`` (-1: outside the folds)."""
    if fold < 0:
        return list(range(len(members)))
    chosen = [i for i, m in enumerate(members) if m.get("fold") in (None, fold)]
    models = {m["name"] for m in members}
    missing = models - {members[i]["name"] for i in chosen}
    if missing:
        raise ValueError(f"no member of {sorted(missing)} was trained without fold {fold}")
    return chosen


def average(members: list[dict], chosen: list[int], predict: Callable[[int], np.ndarray]):
    """The ensemble's probabilities: ``predict(i)`` of each chosen member, averaged over the
    folds of each model, then over the models (float32)."""
    by_model: dict[str, list[int]] = {}
    for i in chosen:
        by_model.setdefault(members[i]["name"], []).append(i)
    total = None
    for indexes in by_model.values():
        model_mean = None
        for i in indexes:
            probs = np.asarray(predict(i), dtype=np.float32)
            model_mean = probs.copy() if model_mean is None else model_mean + probs
        model_mean /= np.float32(len(indexes))
        total = model_mean if total is None else total + model_mean
    return total / np.float32(len(by_model))
