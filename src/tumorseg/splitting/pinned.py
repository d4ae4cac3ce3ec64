"""A user-given (pinned) split file, checked against the sample sheet before it is kept.

:func:`check_pinned` returns the pinned rows as ``case -> (split, fold)``; every check
names the file and, where one is to blame, the case.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict

import pandas as pd

from tumorseg.errors import InputError
from tumorseg.names import PREDICT, SPLITS

log = logging.getLogger("tumorseg")


def parse_fold(value, case: str, where) -> int:
    """A fold number written as ``2``, ``2.0`` or `` 2 ``."""
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        try:
            as_float = float(text)
        except ValueError:
            as_float = math.nan
        if math.isfinite(as_float) and as_float.is_integer():
            return int(as_float)
    raise InputError(f"fold must be an integer, got {value!r}", case, where)


def check_pinned(
    pinned: pd.DataFrame, table: pd.DataFrame, k: int, where
) -> dict[str, tuple[str, int]]:
    """Pinned rows as ``case -> (split, fold)`` after checking them against the sheet
    (``table``: the prepared sheet; ``k``: the number of folds, 0 without
    cross-validation)."""
    where = where if where is not None else "pinned split"
    _check_columns(pinned, k, where)
    cases = [str(v).strip() for v in pinned["case"]]
    splits = [str(v).strip() for v in pinned["split"]]
    _check_cases(cases, set(table["case"]), where)
    _check_split_names(cases, splits, k, where)
    folds = _folds(pinned, cases, splits, k, where) if k else [-1] * len(cases)
    info = table.set_index("case")
    if "subject" in pinned.columns:
        _check_subjects(cases, pinned["subject"], info, where)
    result = {}
    for case, split, fold in zip(cases, splits, folds, strict=True):
        _check_label(case, split, bool(info.at[case, "labelled"]), where)
        result[case] = (split, fold)
    _check_one_split_per_subject(result, info, k, where)
    return result


def _check_columns(pinned: pd.DataFrame, k: int, where) -> None:
    required = ["case", "split", *(["fold"] if k else [])]
    missing = [c for c in required if c not in pinned.columns]
    if missing:
        extra = f" (cv_folds is {k}, so each row needs its fold)" if "fold" in missing else ""
        raise InputError(f"the pinned split file lacks the columns {missing}{extra}", path=where)
    if not k and "fold" in pinned.columns:
        log.warning("%s: cv_folds is 0, so the pinned file's `fold` column is ignored", where)


def _check_cases(cases: list[str], known: set[str], where) -> None:
    dups = sorted({c for c in cases if cases.count(c) > 1})
    if dups:
        raise InputError(f"duplicate cases in the pinned split: {', '.join(dups)}", path=where)
    unknown = [c for c in cases if c not in known]
    if unknown:
        raise InputError(
            f"{len(unknown)} case(s) of the pinned split are not in the sample sheet: "
            f"{', '.join(unknown)} (remove them from the pinned file or add them to the sheet)",
            path=where,
        )


def _check_split_names(cases: list[str], splits: list[str], k: int, where) -> None:
    allowed = (*(("train", "test") if k else SPLITS), PREDICT)
    for case, split in zip(cases, splits, strict=True):
        if split not in allowed:
            hint = " (with cv_folds the non-test split is `train` plus a fold)" if k else ""
            raise InputError(
                f"split {split!r} in the pinned file is not one of {', '.join(allowed)}{hint}",
                case,
                where,
            )


def _folds(pinned: pd.DataFrame, cases: list[str], splits: list[str], k: int, where) -> list:
    """The pinned folds: 0..k-1 for train cases, -1 for the others."""
    folds = []
    for i, (case, split) in enumerate(zip(cases, splits, strict=True)):
        fold = parse_fold(pinned["fold"].iloc[i], case, where)
        if split == "train" and not 0 <= fold < k:
            raise InputError(
                f"pinned fold {fold} of a train case is not in 0..{k - 1} (cv_folds {k})",
                case,
                where,
            )
        if split != "train" and fold != -1:
            raise InputError(f"a {split} case must have fold -1, got {fold}", case, where)
        folds.append(fold)
    return folds


def _check_subjects(cases: list[str], subjects, info: pd.DataFrame, where) -> None:
    for case, subject in zip(cases, subjects, strict=True):
        if str(subject).strip() != info.at[case, "subject"]:
            raise InputError(
                f"subject {str(subject).strip()!r} in the pinned file differs from the "
                f"sample sheet's {info.at[case, 'subject']!r}; a pinned split cannot follow "
                "renamed subjects without risking leakage",
                case,
                where,
            )


def _check_label(case: str, split: str, labelled: bool, where) -> None:
    if split != PREDICT and not labelled:
        raise InputError(
            f"pinned to {split}, but the case has no label in the sample sheet; unlabelled "
            "cases can only be predicted (give its label, or set its split to predict)",
            case,
            where,
        )
    if split == PREDICT and labelled:
        log.warning(
            "case %s: %s: pinned as predict although it has a label; kept as predict "
            "(remove it from the pinned file to have it assigned)",
            case,
            where,
        )


def _check_one_split_per_subject(
    pins: dict[str, tuple[str, int]], info: pd.DataFrame, k: int, where
) -> None:
    by_subject: dict[str, dict[tuple[str, int], list[str]]] = defaultdict(lambda: defaultdict(list))
    for case, (split, fold) in pins.items():
        if split != PREDICT:
            by_subject[info.at[case, "subject"]][(split, fold)].append(case)
    for subject in sorted(by_subject):
        groups = by_subject[subject]
        if len(groups) > 1:
            parts = [
                f"{split}{f' fold {fold}' if k else ''} ({', '.join(sorted(cs))})"
                for (split, fold), cs in sorted(groups.items())
            ]
            raise InputError(
                f"subject {subject} is spread over several splits in the pinned file: "
                + "; ".join(parts)
                + " (all cases of a subject must share one split, or the test set leaks)",
                path=where,
            )
