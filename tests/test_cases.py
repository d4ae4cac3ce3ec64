"""The one case picker (tumorseg.evaluation.cases): best, median and worst by a score."""

import numpy as np
import pandas as pd

from tumorseg.evaluation.cases import pick_cases


def _table(rows):
    return pd.DataFrame(rows, columns=["case", "split", "score"])


def test_higher_is_better_picks_best_median_worst_of_the_split():
    table = _table(
        [("a", "test", 0.5), ("b", "test", 0.9), ("c", "test", 0.1), ("d", "test", 0.7)]
        + [("e", "val", 1.0)]
    )
    picks, fallback = pick_cases(table, "score", "test", list("abcde"), True)
    assert not fallback
    # sorted 0.9, 0.7, 0.5, 0.1: the median of four is the lower of the middle two
    assert picks == [("best", "b", 0.9), ("median", "a", 0.5), ("worst", "c", 0.1)]
    # only candidates (cases with files) qualify
    picks, _ = pick_cases(table, "score", "test", ["a", "c"], True)
    assert [(label, case) for label, case, _ in picks] == [("best", "a"), ("worst", "c")]


def test_lower_is_better_skips_unscored_and_predict_rows_and_breaks_ties_by_name():
    table = _table(
        [("z", "test", 0.2), ("y", "test", 0.2), ("x", "test", np.nan), ("w", "test", 0.9)]
        + [("p", "predict", 0.0), ("v", "test", 0.4)]
    )
    picks, _ = pick_cases(table, "score", "test", list("zyxwpv"), False)
    assert [(label, case) for label, case, _ in picks] == [
        ("best", "y"),
        ("median", "v"),
        ("worst", "w"),
    ]


def test_fallback_to_every_scored_case_when_the_split_has_none():
    table = _table([("a", "train", 0.3), ("b", "val", 0.6), ("c", "predict", 1.0)])
    picks, fallback = pick_cases(table, "score", "test", list("abc"), True)
    assert fallback and [case for _, case, _ in picks] == ["b", "a"]
    assert pick_cases(table.iloc[0:0], "score", "test", [], True) == ([], True)


def test_more_cases_spread_evenly_from_best_to_worst():
    table = _table([(f"c{i:02d}", "test", i / 10) for i in range(11)])
    picks, _ = pick_cases(table, "score", "test", table["case"], False, max_cases=5)
    assert [case for _, case, _ in picks] == ["c00", "c03", "c05", "c08", "c10"]
    assert [label for label, _, _ in picks] == [
        "best",
        "rank 4/11",
        "rank 6/11",
        "rank 9/11",
        "worst",
    ]
