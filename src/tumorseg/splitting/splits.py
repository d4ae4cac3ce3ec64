"""Subject- and scanner-balanced train/val/test splits, with optional cross-validation folds.

Rules (each one is tested in ``tests/test_splitting.py``):

* **Subjects are the unit.** Every labelled case of a subject lands in the same split (and
  fold). A subject is balanced under the scanner of its first case in sorted case order
  (a subject scanned on several scanners counts once, for that scanner).
* **Unlabelled cases** always get the split ``predict`` (fold -1): they are predicted, never
  trained on or scored. A subject with some labelled and some unlabelled cases has its
  labelled cases in its split and the others in ``predict``. A subject with no labelled
  case is not counted in the balancing.
* **Balance.** With ``n_s`` counted subjects on scanner ``s``, ``N`` in all and ratios
  ``r_k``, the number of subjects of scanner ``s`` in split ``k`` is ``n_s * r_k`` rounded
  down or up (so within 1 of its target, exactly when the target is a whole number), and
  the overall count of split ``k`` is ``N * r_k`` rounded down or up. Such a rounding
  always exists (it is a controlled rounding of a two-way table); it is found exactly as a
  small min-cost flow which, among all valid roundings, prefers (in this order): the
  overall counts with the largest fractional parts rounding up, then per scanner the splits
  with the largest fractional parts rounding up, then the split listed first
  (train, val, test; fold 0, 1, ...). Remaining ties are settled by the fixed search order
  (scanners in name order), never by chance.
* **Small scanners.** The rounding rule also places scanners too small to reach every
  split: a scanner with one subject puts it where the rounding says, normally ``train``
  (the largest fractional part when train has the largest ratio), unless the overall
  bounds need that subject elsewhere. Every scanner missing a split whose ratio is above 0
  is named in a warning on the ``tumorseg`` logger; no scanner is ever dropped.
* **Which subjects.** Within a scanner, subjects are ordered by a SHA-256 hash of
  ``(seed, subject ID)`` (not Python's salted ``hash``, not the sheet's row order) and dealt
  in that order: the first ones to train, then val, then test. The result depends only on
  the set of rows, the ratios and the seed.
* **Cross-validation** (``cv_folds = k >= 2``): the test split is chosen exactly as without
  cross-validation (same subjects for the same sheet, ratios and seed); the other counted
  subjects (train and val pooled) are dealt into ``k`` folds by the same rounding with
  ratios ``1/k`` each, so fold sizes differ by at most 1 per scanner and overall. Their
  split is ``train`` and the ``fold`` column (``-1`` for test and predict rows) says which
  fold validates: model ``fold<j>`` trains on the train rows with ``fold != j`` and
  validates on ``fold == j``.
* **Pinned splits.** Rows of a pinned split file are kept exactly. New cases of a subject
  already pinned to a split join it. New subjects are assigned so that the per-scanner
  counts reach the targets above when the pinned counts allow it (the pinned subjects
  never exceed the rounding's counts); otherwise each new subject, in hash order, goes to
  the split its scanner lacks most (ties: the split the whole set lacks most, then the one
  listed first). The bounds then hold only as far as the pinned split allows.
"""

from __future__ import annotations

import hashlib
import logging
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import pandas as pd

from tumorseg.errors import InputError
from tumorseg.io.tables import read_tsv, write_tsv
from tumorseg.names import ALL, PREDICT, SPLITS
from tumorseg.report.figures import plot_split_summary
from tumorseg.splitting.pinned import check_pinned
from tumorseg.splitting.rounding import controlled_round

log = logging.getLogger("tumorseg")

__all__ = [
    "ALL",
    "PREDICT",
    "SPLITS",
    "check_ratios",
    "controlled_round",
    "make_splits",
    "plot_split_summary",
    "run",
    "split_summary",
]


# --------------------------------------------------------------------------------------
# Checks of the inputs
# --------------------------------------------------------------------------------------


def check_ratios(ratios: Mapping[str, float]) -> dict[str, Fraction]:
    """Split ratios as exact fractions summing to 1 (decimal values such as 0.7 are taken
    as written); they must be train, val and test in [0, 1] summing to 1 within 1e-6."""
    if not isinstance(ratios, Mapping):
        raise InputError(f"split ratios must be a mapping of {list(SPLITS)}, got {ratios!r}")
    keys = set(ratios)
    if keys != set(SPLITS):
        raise InputError(
            f"split ratios must name exactly {', '.join(SPLITS)} (config split.ratios); "
            f"got {', '.join(sorted(map(str, keys))) or 'nothing'}"
        )
    exact: dict[str, Fraction] = {}
    for name in SPLITS:
        value = ratios[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InputError(f"split ratio {name} must be a number, got {value!r}")
        if not (math.isfinite(value) and 0 <= value <= 1):
            raise InputError(f"split ratio {name} must be between 0 and 1, got {value!r}")
        exact[name] = Fraction(repr(float(value)))  # 0.7 is 7/10
    total = sum(exact.values())
    if abs(total - 1) > Fraction(1, 10**6):
        raise InputError(
            "split ratios must sum to 1 (config split.ratios): "
            + " + ".join(f"{name} {ratios[name]}" for name in SPLITS)
            + f" = {float(total):g}"
        )
    return {name: v / total for name, v in exact.items()}


def _check_folds(cv_folds: int) -> int:
    if isinstance(cv_folds, bool) or not isinstance(cv_folds, int):
        raise InputError(f"cv_folds must be an integer, got {cv_folds!r}")
    if cv_folds < 0 or cv_folds == 1:
        raise InputError(
            f"cv_folds must be 0 (no cross-validation) or at least 2, got {cv_folds} "
            "(config split.cv_folds)"
        )
    return cv_folds


def _as_bool(value, case: str, where) -> bool:
    if isinstance(value, bool):
        return value
    if hasattr(value, "dtype") and str(getattr(value, "dtype", "")) == "bool":
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise InputError(f"`labelled` must be True or False, got {value!r}", case, where)


def _prepare_sheet(sheet: pd.DataFrame, where=None) -> pd.DataFrame:
    missing = [c for c in ("case", "subject", "scanner", "labelled") if c not in sheet.columns]
    if missing:
        raise InputError(f"the sample sheet lacks the columns {missing}", path=where)
    table = pd.DataFrame(
        {
            "case": [str(v).strip() for v in sheet["case"]],
            "subject": [str(v).strip() for v in sheet["subject"]],
            "scanner": [str(v).strip() for v in sheet["scanner"]],
        }
    )
    table["labelled"] = [
        _as_bool(v, c, where) for v, c in zip(sheet["labelled"], table["case"], strict=True)
    ]
    for col in ("case", "subject", "scanner"):
        empty = table.loc[table[col].isin(["", "nan", "None"]), "case"].tolist()
        if empty:
            raise InputError(f"empty {col} for cases {empty}", path=where)
    dups = sorted(table.loc[table["case"].duplicated(), "case"].unique())
    if dups:
        raise InputError(f"duplicate case IDs: {', '.join(dups)}", path=where)
    return table.sort_values("case", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Assignment
# --------------------------------------------------------------------------------------


def _hash_order(subjects, seed: int, salt: str) -> list[str]:
    def key(subject: str):
        digest = hashlib.sha256(f"{seed}\x00{salt}\x00{subject}".encode()).hexdigest()
        return digest, subject

    return sorted(subjects, key=key)


def _assign(
    scanners: list[str],
    new: Mapping[str, list[str]],
    pinned_counts: Mapping[str, list[int]],
    ratios: list[Fraction],
    col_group: list[int],
    n_groups: int,
) -> dict[str, int]:
    """Assign the new subjects of each scanner (given in dealing order) to groups.

    Groups are unions of columns (``col_group``): the rounding is on the columns, so a
    coarser grouping deals the same subjects to a group as the finer one would to its
    columns (what makes the test split the same with and without cross-validation).
    """
    sizes = [len(new[s]) + sum(pinned_counts[s]) for s in scanners]
    x = controlled_round(sizes, ratios)
    xg = [
        [sum(x[i][c] for c in range(len(ratios)) if col_group[c] == g) for g in range(n_groups)]
        for i in range(len(scanners))
    ]
    result: dict[str, int] = {}
    if all(
        xg[i][g] >= pinned_counts[s][g] for i, s in enumerate(scanners) for g in range(n_groups)
    ):
        for i, s in enumerate(scanners):
            subjects = iter(new[s])
            for g in range(n_groups):
                for _ in range(xg[i][g] - pinned_counts[s][g]):
                    result[next(subjects)] = g
        return result
    log.info(
        "the pinned split has more subjects in some split than the balanced targets; "
        "new subjects are assigned to the splits that lack most"
    )
    group_ratio = [
        sum((r for c, r in enumerate(ratios) if col_group[c] == g), Fraction(0))
        for g in range(n_groups)
    ]
    usable = [g for g in range(n_groups) if group_ratio[g] > 0]
    total = sum(sizes)
    totals = [sum(pinned_counts[s][g] for s in scanners) for g in range(n_groups)]
    for i, s in enumerate(scanners):
        counts = list(pinned_counts[s])
        for subject in new[s]:
            g = max(
                usable,
                key=lambda g: (
                    sizes[i] * group_ratio[g] - counts[g],
                    total * group_ratio[g] - totals[g],
                    -g,
                ),
            )
            counts[g] += 1
            totals[g] += 1
            result[subject] = g
    return result


def make_splits(
    sheet: pd.DataFrame,
    ratios: Mapping[str, float],
    seed: int,
    cv_folds: int = 0,
    pinned: pd.DataFrame | None = None,
    pinned_path: str | None = None,
) -> pd.DataFrame:
    """Split the cases of ``sheet`` (columns ``case``, ``subject``, ``scanner``, ``labelled``).

    Returns one row per case, sorted by case, with columns ``case``, ``subject``,
    ``scanner`` (the case's own), ``split`` (train/val/test/predict) and, when
    ``cv_folds >= 2``, ``fold`` (int, -1 for test and predict). See the module docstring
    for the rules. ``pinned`` is an earlier split (``case``, ``split``, and ``fold`` with
    cross-validation) kept as it is; ``pinned_path`` names it in error messages.
    """
    exact = check_ratios(ratios)
    k = _check_folds(cv_folds)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"the split seed must be an integer, got {seed!r}")
    table = _prepare_sheet(sheet)
    pins = check_pinned(pinned, table, k, pinned_path) if pinned is not None else {}
    subjects = _subjects(table, pins)
    split_of = _deal_splits(subjects, exact, k, seed)
    fold_of: dict[str, int] = {s: -1 for s in subjects.counted}
    if k:
        fold_of.update(_deal_folds(subjects, split_of, k, seed, pinned_path))
    out = _rows(table, pins, split_of, fold_of, k)
    _report(out, subjects.scanner_of, subjects.counted, subjects.scanners, exact, k)
    return out


@dataclass(frozen=True)
class _Subjects:
    """The subjects that the balancing counts, with their scanners and pinned places."""

    #: scanner a subject is balanced under (that of its first case in case order)
    scanner_of: dict[str, str]
    #: subjects with a labelled case that is not pinned as predict, sorted
    counted: list[str]
    #: scanners of the counted subjects, sorted
    scanners: list[str]
    #: ``subject -> (split, fold)`` of subjects the pinned file places (non-predict rows)
    pinned: dict[str, tuple[str, int]]


def _subjects(table: pd.DataFrame, pins: Mapping[str, tuple[str, int]]) -> _Subjects:
    first = table.drop_duplicates("subject", keep="first")
    scanner_of = dict(zip(first["subject"], first["scanner"], strict=True))
    pinned_predict = table["case"].map(lambda c: c in pins and pins[c][0] == PREDICT)
    counted = sorted(set(table.loc[table["labelled"] & ~pinned_predict, "subject"]))
    pinned_split: dict[str, tuple[str, int]] = {}
    for case, subject, labelled in table[["case", "subject", "labelled"]].itertuples(index=False):
        if labelled and case in pins and pins[case][0] != PREDICT:
            pinned_split[subject] = pins[case]
    scanners = sorted({scanner_of[s] for s in counted})
    return _Subjects(scanner_of, counted, scanners, pinned_split)


def _deal(
    subjects: _Subjects,
    pool: list[str],
    pinned_group,
    ratios: list[Fraction],
    col_group: list[int],
    n_groups: int,
    seed: int,
    salt: str,
) -> dict[str, int]:
    """Deal the unpinned subjects of ``pool`` to groups; ``pinned_group(subject)`` is the
    group of a pinned one."""
    new: dict[str, list[str]] = {s: [] for s in subjects.scanners}
    pinned_counts = {s: [0] * n_groups for s in subjects.scanners}
    for subject in pool:
        scanner = subjects.scanner_of[subject]
        if subject in subjects.pinned:
            pinned_counts[scanner][pinned_group(subject)] += 1
        else:
            new[scanner].append(subject)
    new = {s: _hash_order(v, seed, salt) for s, v in new.items()}
    return _assign(subjects.scanners, new, pinned_counts, ratios, col_group, n_groups)


def _deal_splits(
    subjects: _Subjects, exact: Mapping[str, Fraction], k: int, seed: int
) -> dict[str, str]:
    """Split of every counted subject; with folds train and val are one group (``train``)."""
    if k:
        stage_groups, col_group = ("train", "test"), [0, 0, 1]
    else:
        stage_groups, col_group = SPLITS, [0, 1, 2]
    stage = _deal(
        subjects,
        subjects.counted,
        lambda s: stage_groups.index(subjects.pinned[s][0]),
        [exact[name] for name in SPLITS],
        col_group,
        len(stage_groups),
        seed,
        "split",
    )
    split_of: dict[str, str] = {s: v[0] for s, v in subjects.pinned.items()}
    split_of.update({s: stage_groups[g] for s, g in stage.items()})
    return split_of


def _deal_folds(
    subjects: _Subjects, split_of: Mapping[str, str], k: int, seed: int, pinned_path
) -> dict[str, int]:
    """Fold of every counted subject outside the test split."""
    non_test = [s for s in subjects.counted if split_of[s] == "train"]
    if len(non_test) < k:
        raise InputError(
            f"cv_folds is {k} but only {len(non_test)} labelled subject(s) are left "
            f"outside the test split; lower split.cv_folds or the test ratio",
            path=pinned_path,
        )
    folds = _deal(
        subjects,
        non_test,
        lambda s: subjects.pinned[s][1],
        [Fraction(1, k)] * k,
        list(range(k)),
        k,
        seed,
        "fold",
    )
    fold_of = {s: subjects.pinned[s][1] for s in non_test if s in subjects.pinned}
    fold_of.update(folds)
    return fold_of


def _rows(table, pins, split_of, fold_of, k: int) -> pd.DataFrame:
    """One row per case: pinned rows as pinned, unlabelled ones predict, the others their
    subject's split (and fold)."""
    rows = []
    for case, subject, scanner, labelled in table.itertuples(index=False):
        if case in pins:
            split, fold = pins[case]
        elif not labelled:
            split, fold = PREDICT, -1
        else:
            split, fold = split_of[subject], fold_of[subject]
        rows.append((case, subject, scanner, split, fold))
    out = pd.DataFrame(rows, columns=["case", "subject", "scanner", "split", "fold"])
    out["fold"] = out["fold"].astype("int64")
    if not k:
        out = out.drop(columns="fold")
    return out


def _report(out, subject_scanner, counted, scanners, exact, k) -> None:
    """Log the counts per scanner and warn about scanners that miss a split."""
    placed = out[out["split"] != PREDICT].drop_duplicates("subject")
    by_subject = dict(zip(placed["subject"], placed["split"], strict=True))
    fold_by_subject = dict(zip(placed["subject"], placed["fold"], strict=True)) if k else {}
    for scanner in sorted(set(out["scanner"]) - set(scanners)):
        log.warning("scanner %s has no labelled case: its cases are only predicted", scanner)
    wanted = ["train", "test"] if k else [s for s in SPLITS if exact[s] > 0]
    if k and exact["test"] == 0:
        wanted = ["train"]
    for scanner in scanners:
        subjects = [s for s in counted if subject_scanner[s] == scanner]
        counts = {name: sum(by_subject.get(s) == name for s in subjects) for name in SPLITS}
        text = ", ".join(f"{name} {counts[name]}" for name in (wanted if k else SPLITS))
        if k:
            per_fold = [sum(fold_by_subject.get(s) == f for s in subjects) for f in range(k)]
            text += " (folds " + "/".join(map(str, per_fold)) + ")"
        log.info("scanner %s: %d labelled subject(s): %s", scanner, len(subjects), text)
        missing = [name for name in wanted if counts[name] == 0]
        if k:
            missing += [f"fold {f}" for f in range(k) if per_fold[f] == 0]
        if missing:
            log.warning(
                "scanner %s has %d labelled subject(s), too few to reach every split: none in "
                "%s (placed by the balancing rule, see tumorseg.splitting.splits)",
                scanner,
                len(subjects),
                ", ".join(missing),
            )


# --------------------------------------------------------------------------------------
# Summary and the workflow step (the picture: tumorseg.report.figures)
# --------------------------------------------------------------------------------------


def split_summary(splits: pd.DataFrame) -> pd.DataFrame:
    """Subjects and cases per scanner per split (and per fold), long format.

    Columns ``by`` (``split`` or ``fold``), ``group`` (split name or fold number),
    ``scanner``, ``subjects``, ``cases``. ``(all)`` rows give the totals over scanners and
    over groups. Cases count under their own scanner; subjects under the scanner they are
    balanced under (the scanner of their first case in sorted case order), so a subject
    counts once per group.
    """
    df = splits.sort_values("case", kind="stable")
    first = df.drop_duplicates("subject", keep="first")
    home = dict(zip(first["subject"], first["scanner"], strict=True))
    df = df.assign(home=df["subject"].map(home))
    scanners = sorted(set(df["scanner"]) | set(df["home"]))
    parts = [
        (
            "split",
            "split",
            [*SPLITS, PREDICT] if "fold" not in df.columns else ["train", "test", PREDICT],
        )
    ]
    if "fold" in df.columns:
        folds = sorted(int(f) for f in set(df["fold"]) if int(f) >= 0)
        parts.append(("fold", "fold", folds))
    rows = []
    for by, column, groups in parts:
        sub = df if by == "split" else df[df["fold"].astype(int) >= 0]
        keys = sub[column].astype(int) if by == "fold" else sub[column]
        for group in [*groups, ALL]:
            in_group = sub if group == ALL else sub[keys == group]
            for scanner in [*scanners, ALL]:
                if scanner == ALL:
                    cases, subjects = in_group, in_group
                else:
                    cases = in_group[in_group["scanner"] == scanner]
                    subjects = in_group[in_group["home"] == scanner]
                rows.append(
                    {
                        "by": by,
                        "group": str(group),
                        "scanner": scanner,
                        "subjects": int(subjects["subject"].nunique()),
                        "cases": len(cases),
                    }
                )
    return pd.DataFrame(rows, columns=["by", "group", "scanner", "subjects", "cases"])


def run(
    sheet_path: str,
    ratios: Mapping[str, float],
    seed: int,
    cv_folds: int,
    pinned_path: str | None,
    out_splits: str,
    out_summary: str,
    out_plot: str,
) -> None:
    """Workflow step: split the completed sheet and write the splits, summary and picture."""
    sheet = _prepare_sheet(read_tsv(sheet_path, "sample sheet", text=True), where=sheet_path)
    pinned = None
    if pinned_path:
        pinned = read_tsv(pinned_path, "pinned split file (config split.pinned)", text=True)
    splits = make_splits(sheet, dict(ratios), int(seed), int(cv_folds), pinned, pinned_path)
    summary = split_summary(splits)
    write_tsv(splits, out_splits, na_rep="")
    write_tsv(summary, out_summary, na_rep="")
    plot_split_summary(summary, out_plot)
    log.info(
        "wrote %s (%d cases: %s)",
        out_splits,
        len(splits),
        ", ".join(f"{n} {s}" for s, n in splits["split"].value_counts().sort_index().items()),
    )
