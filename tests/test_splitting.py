"""Tests of tumorseg.splitting.splits: leakage, balance bounds, determinism, CV folds, pinned
splits."""

from __future__ import annotations

import logging
import math
from collections import Counter
from fractions import Fraction

import pandas as pd
import pytest
from figure_checks import legend_entries, texts, titles, written
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tumorseg.errors import InputError
from tumorseg.names import in_split_order
from tumorseg.splitting.splits import (
    controlled_round,
    make_splits,
    plot_split_summary,
    run,
    split_summary,
)

DEFAULT = {"train": 0.7, "val": 0.15, "test": 0.15}
SPLIT_NAMES = ("train", "val", "test")
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ helpers


@st.composite
def sheets(draw, max_scanners=6):
    """Random sheets: 1-6 scanners of unbalanced sizes, 1-3 sessions per subject, some
    unlabelled cases, a few subjects scanned on two scanners."""
    n_scanners = draw(st.integers(1, max_scanners))
    rows = []
    for s in range(n_scanners):
        scanner = f"sc{s}"
        n_subjects = draw(st.integers(0, 14))
        for j in range(n_subjects):
            subject = f"{scanner}-p{j:02d}"
            n_sessions = draw(st.integers(1, 3))
            for t in range(n_sessions):
                other = draw(st.integers(0, 9)) == 0 and n_scanners > 1
                case_scanner = f"sc{(s + 1) % n_scanners}" if other else scanner
                labelled = draw(st.integers(0, 6)) != 0
                rows.append(
                    {
                        "case": f"{subject}_s{t}",
                        "subject": subject,
                        "scanner": case_scanner,
                        "labelled": labelled,
                        "flair": f"/data/{subject}_s{t}.nii.gz",
                    }
                )
    if not rows:
        rows.append(
            {"case": "x_s0", "subject": "x", "scanner": "sc0", "labelled": True, "flair": ""}
        )
    return pd.DataFrame(rows)


ratio_choices = st.sampled_from(
    [(14, 3, 3), (12, 4, 4), (10, 5, 5), (20, 0, 0), (16, 0, 4), (15, 5, 0), (7, 7, 6), (9, 8, 3)]
)


def as_ratios(parts):
    return {name: p / 20 for name, p in zip(SPLIT_NAMES, parts, strict=True)}


def home_scanner(sheet: pd.DataFrame) -> dict[str, str]:
    """The scanner a subject is balanced under: that of its first case in case order."""
    first = sheet.sort_values("case").drop_duplicates("subject")
    return dict(zip(first["subject"], first["scanner"], strict=True))


def subject_groups(out: pd.DataFrame, column: str) -> dict[str, str]:
    """subject -> its one value of ``column`` over its non-predict cases (asserts one)."""
    placed = out[out["split"] != "predict"]
    values = placed.groupby("subject")[column].unique()
    for subject, vals in values.items():
        assert len(vals) == 1, f"subject {subject} spread over {list(vals)}"
    return {subject: vals[0] for subject, vals in values.items()}


def assert_within_one(counts: dict, targets: dict) -> None:
    for key, target in targets.items():
        got = counts.get(key, 0)
        if target.denominator == 1:
            assert got == target, (key, got, target)
        else:
            assert math.floor(target) <= got <= math.ceil(target), (key, got, target)


def assert_balanced(sheet, out, parts):
    ratios = {n: Fraction(p, 20) for n, p in zip(SPLIT_NAMES, parts, strict=True)}
    home = home_scanner(sheet)
    counted = sorted(set(sheet.loc[sheet["labelled"], "subject"]))
    split_of = subject_groups(out, "split")
    assert sorted(split_of) == counted
    n_s = Counter(home[s] for s in counted)
    per = Counter((home[s], split_of[s]) for s in counted)
    assert_within_one(per, {(sc, k): n * ratios[k] for sc, n in n_s.items() for k in SPLIT_NAMES})
    overall = Counter(split_of.values())
    assert_within_one(overall, {k: len(counted) * ratios[k] for k in SPLIT_NAMES})


# ------------------------------------------------------------------ controlled rounding


@PROPS
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    parts=st.lists(st.integers(0, 12), min_size=2, max_size=6).filter(lambda p: sum(p) > 0),
)
def test_controlled_round_bounds(sizes, parts):
    ratios = [Fraction(p, sum(parts)) for p in parts]
    x = controlled_round(sizes, ratios)
    for s, n in enumerate(sizes):
        assert sum(x[s]) == n
        for k, r in enumerate(ratios):
            assert math.floor(n * r) <= x[s][k] <= math.ceil(n * r)
    for k, r in enumerate(ratios):
        col = sum(x[s][k] for s in range(len(sizes)))
        assert math.floor(sum(sizes) * r) <= col <= math.ceil(sum(sizes) * r)


def test_controlled_round_prefers_overall_remainders():
    # six one-subject scanners: overall targets 4.2 / 0.9 / 0.9 -> 4 / 1 / 1
    x = controlled_round([1] * 6, [Fraction(7, 10), Fraction(3, 20), Fraction(3, 20)])
    assert [sum(col) for col in zip(*x, strict=True)] == [4, 1, 1]


# ------------------------------------------------------------------ properties


@PROPS
@given(sheet=sheets(), parts=ratio_choices, seed=st.integers(0, 2**31))
def test_no_leakage_balance_predict(sheet, parts, seed):
    out = make_splits(sheet, as_ratios(parts), seed)
    assert list(out.columns) == ["case", "subject", "scanner", "split"]
    assert list(out["case"]) == sorted(sheet["case"])
    merged = out.merge(sheet[["case", "labelled", "scanner"]], on="case", suffixes=("", "_in"))
    assert (merged["scanner"] == merged["scanner_in"]).all()
    assert (merged.loc[~merged["labelled"], "split"] == "predict").all()
    assert merged.loc[merged["labelled"], "split"].isin(SPLIT_NAMES).all()
    assert_balanced(sheet, out, parts)


@PROPS
@given(sheet=sheets(), parts=ratio_choices, seed=st.integers(0, 2**31), perm=st.randoms())
def test_deterministic_and_row_order_independent(sheet, parts, seed, perm):
    first = make_splits(sheet, as_ratios(parts), seed)
    again = make_splits(sheet.copy(), as_ratios(parts), seed)
    order = list(range(len(sheet)))
    perm.shuffle(order)
    shuffled = sheet.iloc[order].reset_index(drop=True)
    other = make_splits(shuffled, as_ratios(parts), seed)
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, other)


@PROPS
@given(
    sheet=sheets(),
    parts=ratio_choices,
    seed=st.integers(0, 2**31),
    k=st.integers(2, 5),
    perm=st.randoms(),
)
def test_cv_folds_balanced_and_test_held_out_identically(sheet, parts, seed, k, perm):
    plain = make_splits(sheet, as_ratios(parts), seed)
    plain_split = subject_groups(plain, "split")
    non_test = [s for s, v in plain_split.items() if v != "test"]
    if len(non_test) < k:
        with pytest.raises(InputError, match="cv_folds"):
            make_splits(sheet, as_ratios(parts), seed, cv_folds=k)
        return
    out = make_splits(sheet, as_ratios(parts), seed, cv_folds=k)
    assert list(out.columns) == ["case", "subject", "scanner", "split", "fold"]
    assert out["fold"].dtype == "int64"
    # the test split is exactly the one chosen without cross-validation
    assert list(out["split"] == "test") == list(plain["split"] == "test")
    assert list(out["split"] == "predict") == list(plain["split"] == "predict")
    assert set(out["split"]) <= {"train", "test", "predict"}
    assert (out.loc[out["split"] != "train", "fold"] == -1).all()
    assert out.loc[out["split"] == "train", "fold"].between(0, k - 1).all()
    fold_of = subject_groups(out, "fold")
    home = home_scanner(sheet)
    per = Counter((home[s], fold_of[s]) for s in non_test)
    for scanner in {home[s] for s in non_test}:
        counts = [per[(scanner, f)] for f in range(k)]
        assert max(counts) - min(counts) <= 1, (scanner, counts)
    sizes = Counter(fold_of[s] for s in non_test)
    overall = [sizes[f] for f in range(k)]
    assert max(overall) - min(overall) <= 1
    assert min(overall) >= 1
    order = list(range(len(sheet)))
    perm.shuffle(order)
    shuffled = make_splits(sheet.iloc[order], as_ratios(parts), seed, cv_folds=k)
    pd.testing.assert_frame_equal(out, shuffled)


@PROPS
@given(
    sheet=sheets(max_scanners=4),
    parts=ratio_choices,
    seed=st.integers(0, 2**31),
    keep=st.randoms(),
    cv=st.sampled_from([0, 2, 3]),
)
def test_pinned_rows_kept_and_new_cases_follow(sheet, parts, seed, keep, cv):
    ratios = as_ratios(parts)
    try:
        earlier = make_splits(sheet, ratios, seed + 1, cv_folds=cv)
    except InputError:
        return  # too few subjects for the folds
    subjects = sorted(set(sheet["subject"]))
    pinned_subjects = {s for s in subjects if keep.random() < 0.5}
    # pin some subjects, but only their first session: later sessions are "new cases"
    first_case = sheet.sort_values("case").drop_duplicates("subject")["case"]
    pinned = earlier[
        earlier["subject"].isin(pinned_subjects) & earlier["case"].isin(first_case)
    ].reset_index(drop=True)
    out = make_splits(sheet, ratios, seed, cv_folds=cv, pinned=pinned, pinned_path="p.tsv")
    kept = out.set_index("case").loc[pinned["case"]].reset_index()
    pd.testing.assert_frame_equal(kept, pinned)
    # no leakage: a subject's labelled cases share one split and fold
    subject_groups(out, "split")
    if cv:
        subject_groups(out, "fold")
    labelled = dict(zip(sheet["case"], sheet["labelled"], strict=True))
    for case, split in zip(out["case"], out["split"], strict=True):
        if not labelled[case]:
            assert split == "predict"
    # new sessions of a pinned subject follow it
    pinned_split = {
        s: g for s, g in zip(pinned["subject"], pinned["split"], strict=True) if g != "predict"
    }
    for case, subject, split in zip(out["case"], out["subject"], out["split"], strict=True):
        if labelled[case] and subject in pinned_split:
            assert split == pinned_split[subject]


@PROPS
@given(sheet=sheets(), parts=ratio_choices, seed=st.integers(0, 2**31), cv=st.sampled_from([0, 3]))
def test_pinning_the_own_output_changes_nothing(sheet, parts, seed, cv):
    try:
        out = make_splits(sheet, as_ratios(parts), seed, cv_folds=cv)
    except InputError:
        return
    again = make_splits(sheet, as_ratios(parts), seed, cv_folds=cv, pinned=out.astype(str))
    pd.testing.assert_frame_equal(out, again)


# ------------------------------------------------------------------ hand-made examples


def example_sheet() -> pd.DataFrame:
    rows = []
    for scanner, n in (("A", 10), ("B", 5), ("C", 1)):
        for i in range(n):
            subject = f"{scanner}{i:02d}"
            rows.append((f"{subject}_1", subject, scanner, True))
    rows.append(("A00_2", "A00", "A", False))  # unlabelled session of a labelled subject
    rows.append(("A03_2", "A03", "B", True))  # second session on another scanner
    rows.append(("D_1", "D", "B", False))  # unlabelled subject: not counted
    return pd.DataFrame(rows, columns=["case", "subject", "scanner", "labelled"])


def test_hand_made_example_exact_counts(caplog):
    # targets A 7/1.5/1.5, B 3.5/.75/.75, C .7/.15/.15, overall 11.2/2.4/2.4: the rounding
    # keeps A's train at 7 (an integer), so C's single subject must take the extra train
    # place; overall val and test tie at .4, and val (listed first) rounds up.
    sheet = example_sheet()
    with caplog.at_level(logging.INFO, logger="tumorseg"):
        out = make_splits(sheet, DEFAULT, seed=1)
    split_of = subject_groups(out, "split")
    home = home_scanner(sheet)
    counts = Counter((home[s], g) for s, g in split_of.items())
    assert dict(counts) == {
        ("A", "train"): 7,
        ("A", "val"): 2,
        ("A", "test"): 1,
        ("B", "train"): 3,
        ("B", "val"): 1,
        ("B", "test"): 1,
        ("C", "train"): 1,
    }
    assert Counter(split_of.values()) == {"train": 11, "val": 3, "test": 2}
    got = out.set_index("case")["split"]
    assert got["A00_2"] == "predict" and got["D_1"] == "predict"
    assert got["A03_2"] == got["A03_1"] != "predict"
    assert out.loc[out["case"] == "A03_2", "scanner"].item() == "B"  # the case's own scanner
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("scanner C" in w and "val, test" in w for w in warnings), warnings
    assert not any("scanner A" in w or "scanner B" in w for w in warnings), warnings

    summary = split_summary(out).set_index(["by", "group", "scanner"])
    assert summary.loc[("split", "train", "(all)"), "subjects"] == 11
    assert summary.loc[("split", "val", "C"), "subjects"] == 0
    assert summary.loc[("split", "predict", "B"), "cases"] == 1  # D_1
    assert summary.loc[("split", "(all)", "(all)"), "cases"] == len(sheet)
    assert summary.loc[("split", "(all)", "(all)"), "subjects"] == 17


def test_hand_made_example_cv():
    out = make_splits(example_sheet(), DEFAULT, seed=1, cv_folds=3)
    plain = make_splits(example_sheet(), DEFAULT, seed=1)
    assert list(out["split"] == "test") == list(plain["split"] == "test")
    fold_of = subject_groups(out, "fold")
    # 14 non-test subjects over 3 folds -> 5/5/4 (fold 0 first), A's 9 -> 3/3/3
    assert sorted(Counter(f for f in fold_of.values() if f >= 0).values()) == [4, 5, 5]
    assert Counter(v for v in fold_of.values() if v >= 0)[0] == 5
    home = home_scanner(example_sheet())
    a_folds = Counter(f for s, f in fold_of.items() if home[s] == "A" and f >= 0)
    assert sorted(a_folds.values()) == [3, 3, 3]
    summary = split_summary(out)
    folds = summary[(summary["by"] == "fold") & (summary["scanner"] == "(all)")]
    assert list(folds["group"]) == ["0", "1", "2", "(all)"]
    assert list(folds["subjects"]) == [5, 5, 4, 14]


def test_one_subject_scanner_goes_to_train():
    sheet = pd.DataFrame({"case": ["a_1"], "subject": ["a"], "scanner": ["X"], "labelled": [True]})
    assert make_splits(sheet, DEFAULT, 3)["split"].tolist() == ["train"]


def test_zero_ratio_and_seed_changes_subjects_not_counts():
    sheet = example_sheet()
    ratios = {"train": 0.8, "val": 0.2, "test": 0.0}
    a = make_splits(sheet, ratios, seed=1)
    b = make_splits(sheet, ratios, seed=2)
    assert "test" not in set(a["split"])
    counts_a = Counter(subject_groups(a, "split").values())
    assert counts_a == Counter(subject_groups(b, "split").values()) == {"train": 13, "val": 3}
    assert list(a["split"]) != list(b["split"])


# ------------------------------------------------------------------ pinned examples


def test_pinned_new_subjects_and_sessions(caplog):
    sheet = example_sheet()
    earlier = make_splits(sheet, DEFAULT, seed=5)
    extra = pd.DataFrame(
        [
            ("A01_9", "A01", "A", True),  # new session of a pinned subject
            ("A10_1", "A10", "A", True),  # new subjects
            ("A11_1", "A11", "A", True),
            ("B05_1", "B05", "B", True),
            ("E_1", "E", "E", False),
        ],
        columns=["case", "subject", "scanner", "labelled"],
    )
    bigger = pd.concat([sheet, extra], ignore_index=True)
    with caplog.at_level(logging.WARNING, logger="tumorseg"):
        out = make_splits(bigger, DEFAULT, seed=5, pinned=earlier, pinned_path="pinned.tsv")
    assert "scanner E has no labelled case" in caplog.text
    kept = out[out["case"].isin(earlier["case"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, earlier)
    got = out.set_index("case")["split"]
    assert got["A01_9"] == got["A01_1"]
    assert got["E_1"] == "predict"
    assert set(got[["A10_1", "A11_1", "B05_1"]]) <= set(SPLIT_NAMES)
    # A now has 12 subjects: targets 8.4 / 1.8 / 1.8, reachable from the pinned 7 / 2 / 1
    split_of = subject_groups(out, "split")
    home = home_scanner(bigger)
    a = Counter(g for s, g in split_of.items() if home[s] == "A")
    assert a["train"] in (8, 9) and a["val"] in (1, 2) and a["test"] in (1, 2)


def test_pinned_overfull_split_uses_deficits():
    # pinned file puts all 4 subjects of scanner X in test; 6 new subjects join
    sheet = pd.DataFrame(
        {
            "case": [f"x{i}_1" for i in range(10)],
            "subject": [f"x{i}" for i in range(10)],
            "scanner": ["X"] * 10,
            "labelled": [True] * 10,
        }
    )
    pinned = pd.DataFrame({"case": [f"x{i}_1" for i in range(4)], "split": ["test"] * 4})
    out = make_splits(sheet, DEFAULT, seed=0, pinned=pinned)
    # targets 7 / 1.5 / 1.5 cannot be met (test holds 4): each new subject goes where the
    # deficit is largest, train (7, 6, ..., 2) before val (1.5)
    assert Counter(out["split"]) == {"test": 4, "train": 6}
    assert (out["split"][:4] == "test").all()


def test_pinned_predict_case_with_label_stays_predict(caplog):
    sheet = example_sheet()
    pinned = pd.DataFrame({"case": ["B00_1"], "split": ["predict"]})
    with caplog.at_level(logging.INFO, logger="tumorseg"):
        out = make_splits(sheet, DEFAULT, seed=1, pinned=pinned)
    assert out.set_index("case").at["B00_1", "split"] == "predict"
    assert "case B00_1" in caplog.text and "kept as predict" in caplog.text
    # B00 no longer counts in the balancing: B keeps 4 subjects (targets 2.8 / .6 / .6)
    assert "scanner B: 4 labelled subject(s)" in caplog.text


# ------------------------------------------------------------------ errors


def test_error_unknown_case_in_pinned():
    pinned = pd.DataFrame({"case": ["A00_1", "ghost_1", "ghost_2"], "split": ["train"] * 3})
    with pytest.raises(InputError, match=r"pins\.tsv.*not in the sample sheet: ghost_1, ghost_2"):
        make_splits(example_sheet(), DEFAULT, 1, pinned=pinned, pinned_path="pins.tsv")


def test_error_subject_spread_over_two_splits():
    pinned = pd.DataFrame({"case": ["A03_1", "A03_2"], "split": ["train", "test"]})
    with pytest.raises(InputError, match="subject A03 is spread over several splits"):
        make_splits(example_sheet(), DEFAULT, 1, pinned=pinned, pinned_path="pins.tsv")


def test_error_subject_spread_over_two_folds():
    pinned = pd.DataFrame(
        {"case": ["A03_1", "A03_2"], "split": ["train", "train"], "fold": ["0", "1"]}
    )
    with pytest.raises(InputError, match="spread over several splits"):
        make_splits(example_sheet(), DEFAULT, 1, cv_folds=3, pinned=pinned)


@pytest.mark.parametrize(
    "pinned, match",
    [
        ({"case": ["D_1"], "split": ["train"]}, "no label"),
        ({"case": ["A01_1"], "split": ["holdout"]}, "not one of"),
        ({"case": ["A01_1", "A01_1"], "split": ["train", "train"]}, "duplicate"),
        ({"case": ["A01_1"]}, "lacks the columns"),
        ({"case": ["A01_1"], "split": ["train"], "subject": ["zzz"]}, "differs"),
    ],
)
def test_error_bad_pinned_rows(pinned, match):
    with pytest.raises(InputError, match=match):
        make_splits(example_sheet(), DEFAULT, 1, pinned=pd.DataFrame(pinned), pinned_path="p")


@pytest.mark.parametrize(
    "pinned, match",
    [
        ({"case": ["A01_1"], "split": ["train"]}, "fold"),
        ({"case": ["A01_1"], "split": ["val"], "fold": [0]}, "not one of"),
        ({"case": ["A01_1"], "split": ["train"], "fold": [3]}, "not in 0..2"),
        ({"case": ["A01_1"], "split": ["test"], "fold": [1]}, "fold -1"),
        ({"case": ["A01_1"], "split": ["train"], "fold": ["x"]}, "integer"),
    ],
)
def test_error_bad_pinned_folds(pinned, match):
    with pytest.raises(InputError, match=match):
        make_splits(example_sheet(), DEFAULT, 1, cv_folds=3, pinned=pd.DataFrame(pinned))


@pytest.mark.parametrize(
    "ratios",
    [
        {"train": 0.7, "val": 0.2, "test": 0.2},
        {"train": 0.5, "val": 0.15, "test": 0.15},
        {"train": 0.7, "val": 0.3},
        {"train": 0.7, "val": 0.3, "test": 0.0, "extra": 0.0},
        {"train": 1.2, "val": -0.1, "test": -0.1},
    ],
)
def test_error_ratios(ratios):
    with pytest.raises(InputError, match="ratio"):
        make_splits(example_sheet(), ratios, 1)


def test_ratios_within_tolerance_accepted():
    out = make_splits(example_sheet(), {"train": 0.3333333, "val": 0.3333333, "test": 0.3333333}, 1)
    assert Counter(subject_groups(out, "split").values()) == {"train": 6, "val": 5, "test": 5}


def test_error_too_few_subjects_for_folds():
    sheet = pd.DataFrame(
        {
            "case": ["a_1", "b_1", "c_1"],
            "subject": ["a", "b", "c"],
            "scanner": ["X"] * 3,
            "labelled": [True] * 3,
        }
    )
    with pytest.raises(InputError, match="cv_folds is 4 but only 3"):
        make_splits(sheet, DEFAULT, 1, cv_folds=4)
    with pytest.raises(InputError, match="cv_folds must be 0"):
        make_splits(sheet, DEFAULT, 1, cv_folds=1)


def test_error_duplicate_cases_and_bad_labelled():
    sheet = example_sheet()
    with pytest.raises(InputError, match="duplicate case IDs: A00_1"):
        make_splits(pd.concat([sheet, sheet.iloc[:1]]), DEFAULT, 1)
    bad = sheet.astype({"labelled": str})
    bad.loc[0, "labelled"] = "maybe"
    with pytest.raises(InputError, match="labelled"):
        make_splits(bad, DEFAULT, 1)


# ------------------------------------------------------------------ the workflow step


def write_sheet(path, sheet):
    sheet.assign(labelled=sheet["labelled"].map({True: "True", False: "False"})).to_csv(
        path, sep="\t", index=False
    )


def test_run_writes_outputs_deterministically(tmp_path):
    sheet_path = tmp_path / "samples.tsv"
    write_sheet(sheet_path, example_sheet().assign(seg=""))
    outs = [tmp_path / "a" / n for n in ("splits.tsv", "summary.tsv", "splits.png")]
    run(str(sheet_path), DEFAULT, 1, 3, None, *map(str, outs))
    splits = pd.read_csv(outs[0], sep="\t", dtype=str, keep_default_na=False)
    assert list(splits.columns) == ["case", "subject", "scanner", "split", "fold"]
    expected = make_splits(example_sheet(), DEFAULT, 1, cv_folds=3).astype(str)
    pd.testing.assert_frame_equal(splits, expected)
    summary = pd.read_csv(outs[1], sep="\t")
    assert set(summary["by"]) == {"split", "fold"}
    assert outs[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = [p.read_bytes() for p in outs]
    run(str(sheet_path), DEFAULT, 1, 3, None, *map(str, outs))
    assert [p.read_bytes() for p in outs] == first
    assert sorted(p.name for p in outs[0].parent.iterdir()) == sorted(p.name for p in outs)

    # the written file pins the split; a new subject joins without moving anything
    bigger = pd.concat(
        [
            example_sheet(),
            pd.DataFrame(
                [("Z_1", "Z", "C", True)], columns=["case", "subject", "scanner", "labelled"]
            ),
        ],
        ignore_index=True,
    )
    write_sheet(sheet_path, bigger)
    outs2 = [tmp_path / "b" / p.name for p in outs]
    run(str(sheet_path), DEFAULT, 7, 3, str(outs[0]), *map(str, outs2))
    again = pd.read_csv(outs2[0], sep="\t", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(again[again["case"] != "Z_1"].reset_index(drop=True), splits)
    assert again.set_index("case").at["Z_1", "split"] in ("train", "test")


def test_run_errors_name_the_file(tmp_path):
    sheet_path = tmp_path / "samples.tsv"
    write_sheet(sheet_path, example_sheet())
    outs = [str(tmp_path / n) for n in ("s.tsv", "m.tsv", "p.png")]
    with pytest.raises(InputError, match="pinned split file .* not found"):
        run(str(sheet_path), DEFAULT, 1, 0, str(tmp_path / "missing.tsv"), *outs)
    pins = tmp_path / "pins.tsv"
    pins.write_text("case\tsplit\nA03_1\ttrain\nA03_2\tval\n")
    with pytest.raises(InputError, match=str(pins)):
        run(str(sheet_path), DEFAULT, 1, 0, str(pins), *outs)
    text = sheet_path.read_text().replace("False", "nope", 1)
    sheet_path.write_text(text)
    with pytest.raises(InputError, match=f"case A00_2: {sheet_path}"):
        run(str(sheet_path), DEFAULT, 1, 0, None, *outs)
    assert not any((tmp_path / n).exists() for n in ("s.tsv", "m.tsv", "p.png"))


def test_plot_without_folds(tmp_path):
    summary = split_summary(make_splits(example_sheet(), DEFAULT, 1))
    fig = plot_split_summary(summary, tmp_path / "x.png")
    assert written(tmp_path / "x.png")
    assert titles(fig) == ["subjects per scanner by split"]
    assert legend_entries(fig) == in_split_order(summary.loc[summary["group"] != "(all)", "group"])
    bars = summary[(summary["by"] == "split") & (summary["group"] != "(all)")]
    bars = bars[bars["scanner"] != "(all)"]
    assert sorted(map(int, texts(fig))) == sorted(int(n) for n in bars["subjects"] if n)


def test_summary_totals_consistent():
    out = make_splits(example_sheet(), DEFAULT, 1, cv_folds=2)
    summary = split_summary(out)
    splits = summary[(summary["by"] == "split") & (summary["group"] != "(all)")]
    per_group_all = splits[splits["scanner"] == "(all)"].set_index("group")["cases"]
    assert per_group_all.sum() == len(out)
    by_scanner = splits[splits["scanner"] != "(all)"].groupby("group")["cases"].sum()
    assert (by_scanner.reindex(per_group_all.index) == per_group_all).all()
    assert "val" not in set(splits["group"])
