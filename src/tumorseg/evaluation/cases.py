"""The one case picker: the best, median and worst scored cases of a split, for the
pictures of a run (segmentation by Dice, translation by MAE)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tumorseg.names import PREDICT


def _labels(n_picks: int, positions: list[int], n: int) -> list[str]:
    if n_picks == 1:
        return [f"rank {positions[0] + 1}/{n}"] if n > 1 else ["best"]
    labels = []
    for k, i in enumerate(positions):
        if k == 0:
            labels.append("best")
        elif k == n_picks - 1:
            labels.append("worst")
        elif n_picks == 3:
            labels.append("median")
        else:
            labels.append(f"rank {i + 1}/{n}")
    return labels


def pick_cases(
    table: pd.DataFrame,
    score: str,
    split: str,
    candidates,
    higher_is_better: bool,
    max_cases: int = 3,
) -> tuple[list[tuple[str, str, float]], bool]:
    """Up to ``max_cases`` scored rows of ``split`` among ``candidates`` (one row per case),
    evenly spread by ``score`` from best to worst: for three the best, the median (of an
    even count the lower-ranked of the two middle cases) and the worst; ties by case name.

    Returns ``[(label, case, score), ...]`` and whether it fell back to every scored case
    (``split`` had none). Rows of the ``predict`` split and rows without a score never
    qualify."""
    scored = table[table["case"].isin(list(candidates)) & table[score].notna()]
    scored = scored[scored["split"] != PREDICT] if "split" in scored else scored
    chosen = scored[scored["split"] == split] if "split" in scored else scored
    fallback = chosen.empty
    if fallback:
        chosen = scored
    if chosen.empty or max_cases < 1:
        return [], fallback
    chosen = chosen.sort_values([score, "case"], ascending=[not higher_is_better, True])
    n = len(chosen)
    spread = np.linspace(0, n - 1, min(max_cases, n))
    positions = list(dict.fromkeys(int(np.floor(i + 0.5)) for i in spread))  # half up
    labels = _labels(len(positions), positions, n)
    return [
        (label, chosen["case"].iloc[i], float(chosen[score].iloc[i]))
        for label, i in zip(labels, positions, strict=True)
    ], fallback
