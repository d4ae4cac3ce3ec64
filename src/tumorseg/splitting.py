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
from collections import defaultdict
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import pandas as pd

from .atomic import atomic_path
from .errors import InputError

log = logging.getLogger("tumorseg")

SPLITS = ("train", "val", "test")
PREDICT = "predict"
ALL = "(all)"
_SPLIT_COLOURS = {"train": "#4c72b0", "val": "#dd8452", "test": "#55a868", PREDICT: "#8c8c8c"}


# --------------------------------------------------------------------------------------
# Controlled rounding (exact, via a small min-cost flow)
# --------------------------------------------------------------------------------------


def _min_cost_flow(n_nodes: int, edges: list[tuple[int, int, int, int]], source: int, sink: int):
    """Min-cost max-flow by successive shortest paths (SPFA; the graph given has no
    negative cycle). Returns the flow on each edge, in the order given."""
    to: list[int] = []
    cap: list[int] = []
    cost: list[int] = []
    adj: list[list[int]] = [[] for _ in range(n_nodes)]
    for u, v, c, w in edges:
        adj[u].append(len(to))
        to.append(v)
        cap.append(c)
        cost.append(w)
        adj[v].append(len(to))
        to.append(u)
        cap.append(0)
        cost.append(-w)
    while True:
        dist: list[int | None] = [None] * n_nodes
        via: list[int] = [-1] * n_nodes
        dist[source] = 0
        queue = [source]
        queued = [False] * n_nodes
        queued[source] = True
        head = 0
        while head < len(queue):
            u = queue[head]
            head += 1
            queued[u] = False
            for e in adj[u]:
                if cap[e] <= 0:
                    continue
                v = to[e]
                d = dist[u] + cost[e]
                if dist[v] is None or d < dist[v]:
                    dist[v] = d
                    via[v] = e
                    if not queued[v]:
                        queued[v] = True
                        queue.append(v)
        if dist[sink] is None:
            break
        push = None
        v = sink
        while v != source:
            e = via[v]
            push = cap[e] if push is None else min(push, cap[e])
            v = to[e ^ 1]
        v = sink
        while v != source:
            e = via[v]
            cap[e] -= push
            cap[e ^ 1] += push
            v = to[e ^ 1]
    return [cap[2 * i + 1] for i in range(len(edges))]


def controlled_round(sizes: Sequence[int], ratios: Sequence[Fraction]) -> list[list[int]]:
    """Integer table ``x[s][k]`` with row sums ``sizes[s]``, each cell ``sizes[s]*ratios[k]``
    rounded down or up, and each column sum ``sum(sizes)*ratios[k]`` rounded down or up.

    ``ratios`` must be exact fractions summing to 1. Preferences among the valid tables are
    described in the module docstring.
    """
    ratios = [Fraction(r) for r in ratios]
    if sum(ratios) != 1:
        raise ValueError("ratios must sum to 1")
    n_rows, n_cols = len(sizes), len(ratios)
    t = [[n * r for r in ratios] for n in sizes]
    low = [[math.floor(v) for v in row] for row in t]
    ups = [sizes[s] - sum(low[s]) for s in range(n_rows)]
    total_ups = sum(ups)
    col_target = [sum((t[s][k] for s in range(n_rows)), Fraction(0)) for k in range(n_cols)]
    col_low = [sum(low[s][k] for s in range(n_rows)) for k in range(n_cols)]
    need_min = [math.floor(col_target[k]) - col_low[k] for k in range(n_cols)]
    need_max = [math.ceil(col_target[k]) - col_low[k] for k in range(n_cols)]
    x = [row[:] for row in low]
    if total_ups == 0:
        return x

    denom = 1
    for v in [*(v for row in t for v in row), *col_target]:
        denom = math.lcm(denom, v.denominator)

    def frac(v: Fraction) -> int:
        return int((v - math.floor(v)) * denom)

    # lexicographic weights: mandatory column minimum > overall remainders > per-scanner
    # remainders > split order
    b4 = total_ups * (n_cols - 1)
    w3 = b4 + 1
    b3 = b4 + w3 * total_ups * denom
    w2 = b3 + 1
    b2 = b3 + w2 * total_ups * denom
    w1 = b2 + 1

    source, sink = 0, 1
    row_node = [2 + s for s in range(n_rows)]
    col_node = [2 + n_rows + k for k in range(n_cols)]
    edges: list[tuple[int, int, int, int]] = []
    for s in range(n_rows):
        if ups[s]:
            edges.append((source, row_node[s], ups[s], 0))
    cell_edges: list[tuple[int, int, int]] = []
    for s in range(n_rows):
        for k in range(n_cols):
            f = frac(t[s][k])
            if f > 0:
                cell_edges.append((len(edges), s, k))
                edges.append((row_node[s], col_node[k], 1, -w3 * f + k))
    for k in range(n_cols):
        if need_min[k] > 0:
            edges.append((col_node[k], sink, need_min[k], -w1))
        if need_max[k] > need_min[k]:
            edges.append((col_node[k], sink, need_max[k] - need_min[k], -w2 * frac(col_target[k])))
    flow = _min_cost_flow(2 + n_rows + n_cols, edges, source, sink)
    for i, s, k in cell_edges:
        x[s][k] += flow[i]
    for s in range(n_rows):
        if sum(x[s]) != sizes[s]:  # pragma: no cover - a bug, not bad input
            raise RuntimeError(f"controlled rounding failed for sizes {sizes}, ratios {ratios}")
    for k in range(n_cols):
        col = sum(x[s][k] for s in range(n_rows))
        if not math.floor(col_target[k]) <= col <= math.ceil(col_target[k]):  # pragma: no cover
            raise RuntimeError(f"controlled rounding failed for sizes {sizes}, ratios {ratios}")
    return x


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


def _parse_fold(value, case: str, where) -> int:
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


def _check_pinned(
    pinned: pd.DataFrame, table: pd.DataFrame, k: int, where
) -> dict[str, tuple[str, int]]:
    """Pinned rows as ``case -> (split, fold)`` after checking them against the sheet."""
    where = where if where is not None else "pinned split"
    required = ["case", "split", *(["fold"] if k else [])]
    missing = [c for c in required if c not in pinned.columns]
    if missing:
        extra = f" (cv_folds is {k}, so each row needs its fold)" if "fold" in missing else ""
        raise InputError(f"the pinned split file lacks the columns {missing}{extra}", path=where)
    if not k and "fold" in pinned.columns:
        log.warning("%s: cv_folds is 0, so the pinned file's `fold` column is ignored", where)
    cases = [str(v).strip() for v in pinned["case"]]
    splits = [str(v).strip() for v in pinned["split"]]
    dups = sorted({c for c in cases if cases.count(c) > 1})
    if dups:
        raise InputError(f"duplicate cases in the pinned split: {', '.join(dups)}", path=where)
    known = set(table["case"])
    unknown = [c for c in cases if c not in known]
    if unknown:
        raise InputError(
            f"{len(unknown)} case(s) of the pinned split are not in the sample sheet: "
            f"{', '.join(unknown)} (remove them from the pinned file or add them to the sheet)",
            path=where,
        )
    allowed = (*(("train", "test") if k else SPLITS), PREDICT)
    for case, split in zip(cases, splits, strict=True):
        if split not in allowed:
            hint = " (with cv_folds the non-test split is `train` plus a fold)" if k else ""
            raise InputError(
                f"split {split!r} in the pinned file is not one of {', '.join(allowed)}{hint}",
                case,
                where,
            )
    folds = [-1] * len(cases)
    if k:
        for i, (case, split) in enumerate(zip(cases, splits, strict=True)):
            fold = _parse_fold(pinned["fold"].iloc[i], case, where)
            if split == "train" and not 0 <= fold < k:
                raise InputError(
                    f"pinned fold {fold} of a train case is not in 0..{k - 1} (cv_folds {k})",
                    case,
                    where,
                )
            if split != "train" and fold != -1:
                raise InputError(f"a {split} case must have fold -1, got {fold}", case, where)
            folds[i] = fold
    info = table.set_index("case")
    if "subject" in pinned.columns:
        for case, subject in zip(cases, pinned["subject"], strict=True):
            if str(subject).strip() != info.at[case, "subject"]:
                raise InputError(
                    f"subject {str(subject).strip()!r} in the pinned file differs from the "
                    f"sample sheet's {info.at[case, 'subject']!r}; a pinned split cannot follow "
                    "renamed subjects without risking leakage",
                    case,
                    where,
                )
    by_subject: dict[str, dict[tuple[str, int], list[str]]] = defaultdict(lambda: defaultdict(list))
    result: dict[str, tuple[str, int]] = {}
    for case, split, fold in zip(cases, splits, folds, strict=True):
        labelled = bool(info.at[case, "labelled"])
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
        if split != PREDICT:
            by_subject[info.at[case, "subject"]][(split, fold)].append(case)
        result[case] = (split, fold)
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
    return result


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
    pins = _check_pinned(pinned, table, k, pinned_path) if pinned is not None else {}

    first = table.drop_duplicates("subject", keep="first")
    subject_scanner = dict(zip(first["subject"], first["scanner"], strict=True))
    # counted: subjects with a labelled case that is not pinned as predict
    pinned_predict = table["case"].map(lambda c: c in pins and pins[c][0] == PREDICT)
    counted = sorted(set(table.loc[table["labelled"] & ~pinned_predict, "subject"]))

    # subjects already placed by the pinned file (their non-predict rows)
    pinned_split: dict[str, tuple[str, int]] = {}
    for case, subject, labelled in table[["case", "subject", "labelled"]].itertuples(index=False):
        if labelled and case in pins and pins[case][0] != PREDICT:
            pinned_split[subject] = pins[case]

    scanners = sorted({subject_scanner[s] for s in counted})
    ratio_list = [exact[name] for name in SPLITS]
    if k:
        stage_groups, col_group = ("train", "test"), [0, 0, 1]
    else:
        stage_groups, col_group = SPLITS, [0, 1, 2]
    new: dict[str, list[str]] = {s: [] for s in scanners}
    pinned_counts = {s: [0] * len(stage_groups) for s in scanners}
    for subject in counted:
        scanner = subject_scanner[subject]
        if subject in pinned_split:
            pinned_counts[scanner][stage_groups.index(pinned_split[subject][0])] += 1
        else:
            new[scanner].append(subject)
    new = {s: _hash_order(v, seed, "split") for s, v in new.items()}
    stage = _assign(scanners, new, pinned_counts, ratio_list, col_group, len(stage_groups))
    split_of: dict[str, str] = {s: v[0] for s, v in pinned_split.items()}
    split_of.update({s: stage_groups[g] for s, g in stage.items()})
    fold_of: dict[str, int] = {s: -1 for s in counted}

    if k:
        non_test = [s for s in counted if split_of[s] == "train"]
        if len(non_test) < k:
            raise InputError(
                f"cv_folds is {k} but only {len(non_test)} labelled subject(s) are left "
                f"outside the test split; lower split.cv_folds or the test ratio",
                path=pinned_path,
            )
        new_f: dict[str, list[str]] = {s: [] for s in scanners}
        fold_counts = {s: [0] * k for s in scanners}
        for subject in non_test:
            scanner = subject_scanner[subject]
            if subject in pinned_split:
                fold_counts[scanner][pinned_split[subject][1]] += 1
            else:
                new_f[scanner].append(subject)
        new_f = {s: _hash_order(v, seed, "fold") for s, v in new_f.items()}
        folds = _assign(scanners, new_f, fold_counts, [Fraction(1, k)] * k, list(range(k)), k)
        fold_of.update({s: pinned_split[s][1] for s in non_test if s in pinned_split})
        fold_of.update(folds)

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
    _report(out, subject_scanner, counted, scanners, exact, k)
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
                "%s (placed by the balancing rule, see tumorseg.splitting)",
                scanner,
                len(subjects),
                ", ".join(missing),
            )


# --------------------------------------------------------------------------------------
# Summary, picture and the workflow step
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


def plot_split_summary(summary: pd.DataFrame, path: str | Path) -> None:
    """Stacked bars of subjects per scanner, by split (and by fold in a second panel)."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas for PNG

    bys = [b for b in ("split", "fold") if (summary["by"] == b).any()]
    fig = Figure(figsize=(5.5 * len(bys), 4.2), layout="constrained")
    axes = fig.subplots(1, len(bys), squeeze=False)[0]
    for ax, by in zip(axes, bys, strict=True):
        part = summary[(summary["by"] == by) & (summary["group"] != ALL)]
        part = part[part["scanner"] != ALL]
        scanners = sorted(set(part["scanner"]))
        groups = list(dict.fromkeys(part["group"]))
        bottom = [0] * len(scanners)
        cmap = matplotlib.colormaps["tab10"]
        for i, group in enumerate(groups):
            counts = [
                int(part[(part["group"] == group) & (part["scanner"] == s)]["subjects"].sum())
                for s in scanners
            ]
            colour = _SPLIT_COLOURS.get(group, cmap(i % 10)) if by == "split" else cmap(i % 10)
            label = group if by == "split" else f"fold {group}"
            ax.bar(scanners, counts, bottom=bottom, label=label, color=colour, edgecolor="white")
            for x, (c, b) in enumerate(zip(counts, bottom, strict=True)):
                if c:
                    ax.text(
                        x, b + c / 2, str(c), ha="center", va="center", fontsize=8, color="white"
                    )
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
        ax.set_xlabel("scanner")
        ax.set_ylabel("subjects")
        ax.set_title(f"subjects per scanner by {by}")
        ax.legend(fontsize=8)
        ax.tick_params(axis="x", labelrotation=30)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})


def _read_tsv(path: str | Path, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path=path)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"cannot parse the {what} as TSV ({err})", path=path) from None
    df.columns = [str(c).strip() for c in df.columns]
    return df.apply(lambda col: col.str.strip())


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
    sheet = _prepare_sheet(_read_tsv(sheet_path, "sample sheet"), where=sheet_path)
    pinned = None
    if pinned_path:
        pinned = _read_tsv(pinned_path, "pinned split file (config split.pinned)")
    splits = make_splits(sheet, dict(ratios), int(seed), int(cv_folds), pinned, pinned_path)
    summary = split_summary(splits)
    with atomic_path(out_splits) as tmp:
        splits.to_csv(tmp, sep="\t", index=False, lineterminator="\n")
    with atomic_path(out_summary) as tmp:
        summary.to_csv(tmp, sep="\t", index=False, lineterminator="\n")
    plot_split_summary(summary, out_plot)
    log.info(
        "wrote %s (%d cases: %s)",
        out_splits,
        len(splits),
        ", ".join(f"{n} {s}" for s, n in splits["split"].value_counts().sort_index().items()),
    )
