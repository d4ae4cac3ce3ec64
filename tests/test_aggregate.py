import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from figure_checks import legend_entries, suptitle, texts, titles, written, xticklabels, ylabels

from tumorseg.errors import InputError
from tumorseg.evaluation.aggregate import (
    PER_CASE_COLUMNS,
    SUMMARY_COLUMNS,
    aggregate_run,
    per_case,
    plot_boxplots,
    plot_overlays,
    summary,
)
from tumorseg.evaluation.segmentation import CASE_COLUMNS

ISSUE_COLUMNS = [
    "case",
    "subject",
    "scanner",
    "split",
    "region",
    "dice",
    "sensitivity",
    "specificity",
    "hd95_directed",
    "hd95_pooled",
    "volume_pred",
    "volume_ref",
    "ceiling_dice",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _case_tsv(tmp_path, case, dices, ceiling=True):
    rows = []
    for region, dice in zip(("ET", "WT", "TC"), dices, strict=True):  # unordered on purpose
        rows.append(
            {
                "case": case,
                "region": region,
                "dice": dice,
                "sensitivity": 0.9,
                "specificity": 0.999,
                "hd95_directed": 12 * (1 - dice),
                "hd95_pooled": 10 * (1 - dice),
                "volume_pred": 100.0,
                "volume_ref": 120.0,
                "ceiling_dice": 0.95 if ceiling else np.nan,
                "ceiling_hd95": 1.0 if ceiling else np.nan,
            }
        )
    path = tmp_path / "cases" / f"{case}.tsv"
    path.parent.mkdir(exist_ok=True)
    pd.DataFrame(rows, columns=list(CASE_COLUMNS)).to_csv(path, sep="\t", index=False, na_rep="NA")
    return str(path)


def _splits(tmp_path, rows, fold=False):
    df = pd.DataFrame(rows, columns=["case", "subject", "scanner", "split"])
    if fold:
        df["fold"] = [0 if s != "test" else -1 for s in df["split"]]
    path = tmp_path / "splits.tsv"
    df.to_csv(path, sep="\t", index=False)
    return str(path)


def test_per_case_join_and_columns(tmp_path):
    splits = _splits(
        tmp_path,
        [
            ("002", "s2", "siteB", "test"),
            ("001", "s1", "siteA", "val"),
            ("003", "s3", "siteA", "train"),
        ],
        fold=True,
    )
    tsvs = [
        _case_tsv(tmp_path, "002", [0.5, 0.8, 0.6]),
        _case_tsv(tmp_path, "001", [0.1, 0.2, 0.3]),
    ]
    out = tmp_path / "m" / "per_case.tsv"
    df = per_case(tsvs, splits, str(out))
    written = pd.read_csv(out, sep="\t", dtype={"case": str})
    assert list(written.columns[: len(ISSUE_COLUMNS)]) == ISSUE_COLUMNS
    assert list(PER_CASE_COLUMNS) == ISSUE_COLUMNS
    extra = {"ceiling_hd95", "lesions_pred", "lesions_ref", "fold"}
    assert set(written.columns[len(ISSUE_COLUMNS) :]) == extra
    # case IDs stay strings with leading zeros; sorted by case then WT, TC, ET
    assert list(written["case"]) == ["001"] * 3 + ["002"] * 3
    assert list(written["region"]) == ["WT", "TC", "ET"] * 2
    row = written[(written["case"] == "002") & (written["region"] == "WT")].iloc[0]
    assert (row["subject"], row["scanner"], row["split"]) == ("s2", "siteB", "test")
    assert row["dice"] == 0.8
    assert list(written["fold"]) == [0, 0, 0, -1, -1, -1]
    assert len(df) == 6


def test_per_case_unknown_case(tmp_path):
    splits = _splits(tmp_path, [("a", "a", "x", "test")])
    tsvs = [_case_tsv(tmp_path, "b", [0.5, 0.5, 0.5])]
    with pytest.raises(InputError, match=r"\['b'\]"):
        per_case(tsvs, splits, str(tmp_path / "p.tsv"))
    assert not (tmp_path / "p.tsv").exists()


def test_per_case_no_cases(tmp_path):
    splits = _splits(tmp_path, [("a", "a", "x", "predict")])
    out = tmp_path / "p.tsv"
    per_case([], splits, str(out))
    assert list(pd.read_csv(out, sep="\t").columns[: len(ISSUE_COLUMNS)]) == ISSUE_COLUMNS


def _per_case_table(tmp_path, name, rows):
    """rows: (case, scanner, split, dice WT, dice TC, dice ET)."""
    records = []
    for case, scanner, split, *dices in rows:
        for region, dice in zip(("WT", "TC", "ET"), dices, strict=True):
            records.append(
                {
                    "case": case,
                    "subject": case,
                    "scanner": scanner,
                    "split": split,
                    "region": region,
                    "dice": dice,
                    "sensitivity": dice,
                    "specificity": 1.0,
                    "hd95_directed": 25.0 * (1 - dice),
                    "hd95_pooled": 20.0 * (1 - dice),
                    "lesion_dice": dice / 2,
                    "lesion_hd95": 30.0 * (1 - dice),
                    "volume_pred": 1000.0 * dice,
                    "volume_ref": 1000.0,
                    "ceiling_dice": 0.9,
                    "ceiling_hd95": 2.0,
                }
            )
    path = tmp_path / f"{name}.tsv"
    pd.DataFrame(records).to_csv(path, sep="\t", index=False)
    return str(path)


def test_summary_statistics(tmp_path):
    rows = [
        ("c1", "A", "test", 0.9, 0.8, 0.7),
        ("c2", "A", "test", 0.5, 0.4, 0.2),
        ("c3", "B", "test", 0.7, 0.1, 0.0),
        ("c4", "B", "test", 0.2, 0.6, 0.3),
        ("c5", "A", "val", 0.6, 0.6, 0.6),
    ]
    path = _per_case_table(tmp_path, "m1", rows)
    out_s, out_c = tmp_path / "summary.tsv", tmp_path / "comparison.tsv"
    summary({"m1": path}, str(out_s), str(out_c))
    s = pd.read_csv(out_s, sep="\t")
    assert list(s.columns) == list(SUMMARY_COLUMNS)

    def get(split, scanner, region, metric):
        hit = s[
            (s["split"] == split)
            & (s["scanner"] == scanner)
            & (s["region"] == region)
            & (s["metric"] == metric)
        ]
        assert len(hit) == 1
        return hit.iloc[0]

    wt_test = np.array([0.9, 0.5, 0.7, 0.2])
    r = get("test", "(all)", "WT", "dice")
    assert r["n"] == 4
    assert r["mean"] == pytest.approx(wt_test.mean())
    assert r["std"] == pytest.approx(wt_test.std(ddof=1))
    assert r["median"] == pytest.approx(np.median(wt_test))
    assert r["q1"] == pytest.approx(np.percentile(wt_test, 25))
    assert r["q3"] == pytest.approx(np.percentile(wt_test, 75))
    r = get("test", "B", "TC", "dice")
    assert r["n"] == 2 and r["mean"] == pytest.approx(0.35)
    r = get("test", "B", "ET", "hd95_pooled")
    assert r["mean"] == pytest.approx(20 * (1 - 0.15))
    r = get("val", "A", "WT", "dice")
    assert r["n"] == 1 and np.isnan(r["std"]) and r["median"] == pytest.approx(0.6)
    assert set(s["split"]) == {"test", "val"}
    assert set(s["scanner"]) == {"(all)", "A", "B"}
    assert "ceiling_dice" in set(s["metric"])


def test_comparison_selects_by_validation_not_test(tmp_path):
    # "good_test" wins on test but loses on validation; "good_val" must be selected
    good_val = _per_case_table(
        tmp_path,
        "good_val",
        [
            ("v1", "A", "val", 0.9, 0.8, 0.7),
            ("v2", "A", "val", 0.8, 0.8, 0.8),
            ("t1", "A", "test", 0.3, 0.2, 0.1),
            ("r1", "A", "train", 0.1, 0.1, 0.1),
        ],
    )
    good_test = _per_case_table(
        tmp_path,
        "good_test",
        [
            ("v1", "A", "val", 0.6, 0.5, 0.4),
            ("v2", "A", "val", 0.6, 0.5, 0.4),
            ("t1", "A", "test", 0.99, 0.99, 0.99),
            ("r1", "A", "train", 0.99, 0.99, 0.99),
        ],
    )
    out_s, out_c = tmp_path / "summary.tsv", tmp_path / "comparison.tsv"
    summary({"good_test": good_test, "good_val": good_val}, str(out_s), str(out_c))
    c = pd.read_csv(out_c, sep="\t")
    assert len(c) == 6  # 2 models x 3 regions
    assert set(c.loc[c["selected"], "model"]) == {"good_val"}
    assert c["selected"].sum() == 3
    row = c[(c["model"] == "good_val") & (c["region"] == "WT")].iloc[0]
    assert row["val_dice"] == pytest.approx(0.85)
    assert row["test_dice"] == pytest.approx(0.3)
    assert row["val_hd95_pooled"] == pytest.approx(20 * (1 - 0.85))
    assert row["val_hd95_directed"] == pytest.approx(25 * (1 - 0.85))
    assert row["val_lesion_dice"] == pytest.approx(0.85 / 2)
    assert row["test_lesion_hd95"] == pytest.approx(30 * (1 - 0.3))
    assert row["n_val"] == 2 and row["n_test"] == 1
    assert row["val_score"] == pytest.approx(np.mean([0.85, 0.8, 0.75]))
    assert row["test_ceiling_dice"] == pytest.approx(0.9)


def test_comparison_tie_goes_to_name_order(tmp_path):
    rows = [("v1", "A", "val", 0.5, 0.5, 0.5), ("t1", "A", "test", 0.5, 0.5, 0.5)]
    paths = {name: _per_case_table(tmp_path, name, rows) for name in ("zeta", "alpha")}
    out_c = tmp_path / "c.tsv"
    summary(paths, str(tmp_path / "s.tsv"), str(out_c))
    c = pd.read_csv(out_c, sep="\t")
    assert set(c.loc[c["selected"], "model"]) == {"alpha"}


def test_an_ensemble_is_kept_only_where_it_beats_every_member(tmp_path):
    """nnU-Net's find_best_configuration: an ensemble of architectures that does not beat
    each member on validation Dice is not kept, so not selected; a single fold is never
    selected (it validates on its fold only)."""

    def run(name, dice):
        return _per_case_table(tmp_path, name, [("v1", "A", "val", dice, dice, dice)])

    paths = {
        "a": run("a", 0.70),
        "b": run("b", 0.60),
        "both": run("both", 0.65),  # between its members: not kept
        "a.fold0": run("a.fold0", 0.99),
        "a.fold0.pp": run("a.fold0.pp", 0.995),
    }
    out_c = tmp_path / "c.tsv"
    summary(paths, str(tmp_path / "s.tsv"), str(out_c), ensembles={"both": ["a", "b"]})
    c = pd.read_csv(out_c, sep="\t", keep_default_na=False).drop_duplicates("model")
    c = c.set_index("model")
    assert c.loc["both", "members"] == "a,b" and c.loc["a", "members"] == ""
    assert c["kept"].astype(str).to_dict() == {
        "a": "True",
        "a.fold0": "True",
        "a.fold0.pp": "True",
        "b": "True",
        "both": "False",
    }
    assert c.index[c["selected"].astype(str) == "True"].tolist() == ["a"]
    paths["both"] = run("both", 0.75)  # beats both members: kept and selected
    summary(paths, str(tmp_path / "s.tsv"), str(out_c), ensembles={"both": ["a", "b"]})
    c = pd.read_csv(out_c, sep="\t").drop_duplicates("model").set_index("model")
    assert bool(c.loc["both", "kept"]) and c.index[c["selected"]].tolist() == ["both"]


def test_comparison_without_validation(tmp_path):
    path = _per_case_table(tmp_path, "m", [("t1", "A", "test", 0.5, 0.4, 0.3)])
    out_c = tmp_path / "c.tsv"
    summary({"m": path}, str(tmp_path / "s.tsv"), str(out_c))
    c = pd.read_csv(out_c, sep="\t")
    assert not c["selected"].any()
    assert c["val_dice"].isna().all()
    assert c.loc[c["region"] == "WT", "test_dice"].iloc[0] == pytest.approx(0.5)


# ----------------------------------------------------------------------------- pictures


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000


def test_plot_boxplots(tmp_path):
    rows = [
        (f"c{i}", "AB"[i % 2], ("train", "val", "test")[i % 3], 0.1 * i, 0.05 * i, 0.02 * i)
        for i in range(1, 10)
    ]
    path = _per_case_table(tmp_path, "m", rows)
    out = tmp_path / "box.png"
    fig = plot_boxplots(path, str(out), "m")
    assert written(out)
    regions = ["WT", "TC", "ET"]
    assert titles(fig) == [
        "Dice by region",
        *(f"{r} Dice by scanner" for r in regions),
        "HD95 pooled (mm) by region",
        *(f"{r} HD95 pooled (mm) by scanner" for r in regions),
    ]
    assert legend_entries(fig) == ["train", "val", "test"]
    assert suptitle(fig) == "m: per-case scores on the native grid (9 cases)"
    assert xticklabels(fig.axes[0]) == regions and xticklabels(fig.axes[1]) == ["A", "B"]


def test_plot_boxplots_empty(tmp_path):
    splits = _splits(tmp_path, [("a", "a", "x", "predict")])
    per = tmp_path / "p.tsv"
    per_case([], splits, str(per))
    out = tmp_path / "box.png"
    fig = plot_boxplots(str(per), str(out), "m")
    assert written(out) and texts(fig) == ["m: no labelled cases were scored"]


def _nifti(path, array):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(image, str(path))
    return str(path)


def _overlay_inputs(tmp_path, cases):
    rng = np.random.default_rng(0)
    files = {}
    for i, case in enumerate(cases):
        image = rng.normal(100, 20, (10, 32, 32)).astype(np.float32)
        ref = np.zeros((10, 32, 32), np.uint8)
        ref[4:7, 10:20, 10:20] = 2
        ref[5, 13:17, 13:17] = 4
        ref[5, 14:16, 14:16] = 1
        pred = np.roll(ref, i, axis=2)
        d = tmp_path / case
        d.mkdir()
        files[case] = {
            "image": _nifti(d / "flair.nii.gz", image),
            "ref": _nifti(d / "seg.nii.gz", ref),
            "pred": _nifti(d / "pred.nii.gz", pred),
        }
    return files


def test_plot_overlays(tmp_path):
    cases = ["a", "b", "c"]
    files = _overlay_inputs(tmp_path, cases)
    table = _per_case_table(
        tmp_path,
        "m",
        [
            ("a", "A", "test", 0.9, 0, 0),
            ("b", "A", "test", 0.5, 0, 0),
            ("c", "B", "val", 0.1, 0, 0),
        ],
    )
    out = tmp_path / "overlays.png"
    fig = plot_overlays(table, files, str(out), "brats2017")
    assert written(out)
    assert suptitle(fig) == "Best, median and worst of test cases by WT Dice"
    assert [y.split("\n")[0] for y in ylabels(fig)] == ["best: a", "worst: b"]
    assert titles(fig) == ["image", "reference", "prediction"]
    assert legend_entries(fig) == ["necrotic", "edema", "enhancing", "reference outline"]
    out2 = tmp_path / "fallback.png"
    fig = plot_overlays(table, files, str(out2), "brats2017", split="train")  # no train
    assert "all labelled cases (no scored train case)" in suptitle(fig)
    shown = [y.split("\n")[0] for y in ylabels(fig)]
    assert shown == ["best: a", "median: b", "worst: c"]


def test_plot_overlays_bad_label(tmp_path):
    files = _overlay_inputs(tmp_path, ["a"])
    table = _per_case_table(tmp_path, "m", [("a", "A", "test", 0.9, 0, 0)])
    with pytest.raises(InputError, match="outside the brats2023"):
        plot_overlays(table, files, str(tmp_path / "o.png"), "brats2023")  # 4 is not allowed
    assert not (tmp_path / "o.png").exists()


def test_aggregate_run(tmp_path):
    files = _overlay_inputs(tmp_path, ["a", "b"])
    splits = _splits(tmp_path, [("a", "a", "A", "test"), ("b", "b", "B", "val")])
    tsvs = [_case_tsv(tmp_path, "a", [0.5, 0.8, 0.6]), _case_tsv(tmp_path, "b", [0.1, 0.2, 0.3])]
    out = tmp_path / "res"
    aggregate_run(
        tsvs,
        splits,
        str(out / "per_case.tsv"),
        str(out / "box.png"),
        str(out / "ov.png"),
        model="unet",
        labels="brats2017",
        overlay_cases=["a", "b"],
        images=[files[c]["image"] for c in "ab"],
        refs=[files[c]["ref"] for c in "ab"],
        preds=[files[c]["pred"] for c in "ab"],
    )
    assert len(pd.read_csv(out / "per_case.tsv", sep="\t")) == 6
    _assert_png(out / "box.png")
    _assert_png(out / "ov.png")
    with pytest.raises(InputError, match="not aligned"):
        aggregate_run(
            tsvs,
            splits,
            str(out / "p2.tsv"),
            str(out / "b2.png"),
            str(out / "o2.png"),
            model="unet",
            labels="brats2017",
            overlay_cases=["a", "b"],
            images=[files["a"]["image"]],
            refs=[],
            preds=[],
        )


def test_plot_overlays_with_uncertainty_maps(tmp_path):
    """predict.uncertainty: the entropy map of each shown case's slice in a fourth column,
    the same slice and crop as the others (the map's peak is inside the lesion box here)."""
    from figure_checks import images_of

    cases = ["a", "b"]
    files = _overlay_inputs(tmp_path, cases)
    for case in cases:
        entropy = np.zeros((10, 32, 32), np.float32)
        entropy[4:7, 12:18, 12:18] = 1.2  # on the lesion's slices
        files[case]["uncertainty"] = _nifti(tmp_path / case / "entropy.nii.gz", entropy)
    table = _per_case_table(
        tmp_path, "m", [("a", "A", "test", 0.9, 0, 0), ("b", "A", "test", 0.5, 0, 0)]
    )
    fig = plot_overlays(table, files, str(tmp_path / "o.png"), "brats2017")
    assert titles(fig)[:4] == ["image", "reference", "prediction", "uncertainty (entropy, nats)"]
    shown = images_of(fig.axes[3])
    assert (
        shown
        and shown[0].max() == pytest.approx(1.2)
        and shown[0].shape == images_of(fig.axes[0])[0].shape
    )
