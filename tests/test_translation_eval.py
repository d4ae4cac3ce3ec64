"""Translation scoring, tables and pictures on small synthetic cases written with SimpleITK."""

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from figure_checks import legend_entries, suptitle, texts, titles, written, xticklabels, ylabels

from tumorseg.errors import InputError
from tumorseg.evaluation.regression import image_metrics
from tumorseg.evaluation.translation import (
    PER_CASE_COLUMNS,
    evaluate_translation_case,
    per_case_translation,
    plot_translation_boxplots,
    plot_translation_cases,
    summary_translation,
)

SIZE = (40, 48, 30)  # x, y, z
SPACING = (1.2, 1.0, 2.0)
LPS = (1.0, 0, 0, 0, 1, 0, 0, 0, 1)
RAS = (-1.0, 0, 0, 0, -1, 0, 0, 0, 1)


def _ellipsoid(shape_zyx):
    axes = (np.linspace(-1, 1, n) if n > 1 else np.zeros(1) for n in shape_zyx)
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return (z / 0.8) ** 2 + (y / 0.75) ** 2 + (x / 0.7) ** 2 <= 1.0


def _write(path, array, spacing=SPACING, direction=LPS, origin=(-20.0, -30.0, 5.0)):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return str(path)


def make_case(folder, case="c1", seed=0, noise=0.1, size=SIZE, direction=LPS):
    """Native t1 and t2 (raw, 0 outside an ellipsoid brain; t2 a smooth function of t1),
    a prediction (real z-scored t2 + noise), a ceiling, a brain mask and the record."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = size[::-1]
    brain = _ellipsoid(shape)
    z, y, x = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij")
    t1 = np.where(brain, 400 + 150 * np.sin(4 * x + 2 * y) * np.cos(3 * z), 0.0)
    t2 = np.where(brain, 1500 - 2.0 * t1 + 30 * np.cos(5 * y), 0.0)
    stats = {
        k: {"mean": float(a[brain].mean()), "std": float(a[brain].std())}
        for k, a in (("t1", t1), ("t2", t2))
    }
    real_z = np.where(brain, (t2 - stats["t2"]["mean"]) / stats["t2"]["std"], 0.0)
    pred = np.where(brain, real_z + noise * rng.standard_normal(shape), 0.0)
    ceiling = np.where(brain, 0.97 * real_z, 0.0)
    paths = {
        "t1": _write(folder / f"{case}_t1.nii.gz", t1.astype(np.float32), direction=direction),
        "t2": _write(folder / f"{case}_t2.nii.gz", t2.astype(np.float32), direction=direction),
        "pred": _write(
            folder / f"{case}_pred.nii.gz", pred.astype(np.float32), direction=direction
        ),
        "ceiling": _write(
            folder / f"{case}_ceil.nii.gz", ceiling.astype(np.float32), direction=direction
        ),
        "mask": _write(folder / f"{case}_mask.nii.gz", brain.astype(np.uint8), direction=direction),
    }
    record = {
        "case": case,
        "task": "translation",
        "target": "t2",
        "modalities": ["t1"],
        "has_target": True,
        "brain_mask": "threshold",
        "normalisation": {"t1": stats["t1"]},
        "target_normalisation": stats["t2"],
    }
    paths["geometry"] = str(folder / f"{case}_geometry.json")
    (folder / f"{case}_geometry.json").write_text(json.dumps(record))
    arrays = {"brain": brain, "t1": t1, "t2": t2, "pred": pred, "ceiling": ceiling, "real": real_z}
    return paths, arrays, stats


def _evaluate(paths, out, **kw):
    return evaluate_translation_case(
        "c1",
        paths["pred"],
        paths["t2"],
        paths["ceiling"],
        [paths["t1"]],
        paths["geometry"],
        str(out),
        **kw,
    )


def test_case_against_independent_numpy(tmp_path):
    paths, a, stats = make_case(tmp_path / "in")
    out = tmp_path / "c1.tsv"
    row = _evaluate(paths, out, mask_path=paths["mask"])
    table = pd.read_csv(out, sep="\t")
    assert list(table.columns[:9]) == [
        "case",
        "mae",
        "mse",
        "psnr",
        "ssim",
        "baseline_mae",
        "baseline_ssim",
        "ceiling_mae",
        "ceiling_ssim",
    ]
    assert {"baseline_mse", "baseline_psnr", "ceiling_mse", "ceiling_psnr"} <= set(table)
    assert len(table) == 1 and table["case"][0] == "c1"
    brain = a["brain"]
    pred = a["pred"].astype(np.float32).astype(float)
    t2 = a["t2"].astype(np.float32).astype(float)
    real = np.where(brain, (t2 - stats["t2"]["mean"]) / stats["t2"]["std"], 0)
    t1 = a["t1"].astype(np.float32).astype(float)
    base = np.where(brain, (t1 - stats["t1"]["mean"]) / stats["t1"]["std"], 0)
    ceil = a["ceiling"].astype(np.float32).astype(float)
    rng = real[brain].max() - real[brain].min()
    for prefix, arr in (("", pred), ("baseline_", base), ("ceiling_", ceil)):
        diff = (arr - real)[brain]
        assert row[f"{prefix}mae"] == pytest.approx(np.abs(diff).mean(), rel=1e-9)
        assert row[f"{prefix}mse"] == pytest.approx((diff**2).mean(), rel=1e-9)
        psnr = 10 * np.log10(rng**2 / (diff**2).mean())
        assert row[f"{prefix}psnr"] == pytest.approx(psnr, rel=1e-9)
        assert row[f"{prefix}ssim"] == pytest.approx(
            image_metrics(arr, real, brain, rng)["ssim"], abs=1e-9
        )
    assert row["mae"] == pytest.approx(0.1 * np.sqrt(2 / np.pi), rel=0.05)  # E|N(0, 0.1)|
    assert row["ceiling_mae"] < row["mae"] < row["baseline_mae"]
    assert row["ssim"] > row["baseline_ssim"]
    assert table["mae"][0] == pytest.approx(row["mae"], rel=1e-12)
    assert row["data_range"] == pytest.approx(rng)


def test_mask_from_inputs_equals_mask_file(tmp_path):
    paths, a, _ = make_case(tmp_path / "in")
    with_file = _evaluate(paths, tmp_path / "a.tsv", mask_path=paths["mask"])
    from_inputs = _evaluate(paths, tmp_path / "b.tsv")
    assert from_inputs["brain_voxels"] == int(a["brain"].sum())
    for key in ("mae", "ssim", "baseline_mae", "ceiling_ssim"):
        assert from_inputs[key] == pytest.approx(with_file[key], rel=1e-12)


def test_without_ceiling(tmp_path):
    paths, _, _ = make_case(tmp_path / "in")
    paths["ceiling"] = None
    row = _evaluate(paths, tmp_path / "c1.tsv")
    assert np.isnan(row["ceiling_mae"]) and np.isfinite(row["mae"])
    assert pd.read_csv(tmp_path / "c1.tsv", sep="\t")["ceiling_mae"].isna().all()


@pytest.mark.parametrize("n_slices", [4, 1])
def test_thin_stack_is_scored(tmp_path, n_slices):
    paths, a, _ = make_case(tmp_path / "in", size=(40, 48, n_slices))
    row = _evaluate(paths, tmp_path / "c1.tsv")
    assert row["brain_voxels"] == int(a["brain"].sum()) > 0
    assert 0 < row["ssim"] < 1 and row["ceiling_ssim"] > row["ssim"]
    per_case = per_case_translation(
        [str(tmp_path / "c1.tsv")],
        _splits(tmp_path / "s.tsv", [("c1", "c1", "DU", "test")]),
        str(tmp_path / "per_case.tsv"),
    )
    assert len(per_case) == 1
    cases = {
        "c1": {
            "input": paths["t1"],
            "pred": paths["pred"],
            "target": paths["t2"],
            "geometry": paths["geometry"],
        }
    }
    fig = plot_translation_cases(str(tmp_path / "per_case.tsv"), cases, str(tmp_path / "c.png"))
    assert written(tmp_path / "c.png")
    assert [y.split("\n")[0] for y in ylabels(fig)] == ["best: c1"] * len(ylabels(fig))


def test_case_errors(tmp_path):
    paths, a, _ = make_case(tmp_path / "in")
    other = _write(tmp_path / "other.nii.gz", a["t2"].astype(np.float32), spacing=(1, 1, 1))
    with pytest.raises(InputError, match="another grid") as err:
        _evaluate({**paths, "t2": other}, tmp_path / "x.tsv")
    assert "case c1" in str(err.value) and "other.nii.gz" in str(err.value)
    with pytest.raises(InputError, match="target file not found"):
        _evaluate({**paths, "t2": str(tmp_path / "missing.nii.gz")}, tmp_path / "x.tsv")
    empty = _write(tmp_path / "empty.nii.gz", np.zeros(a["brain"].shape, np.uint8))
    with pytest.raises(InputError, match="brain mask.*empty"):
        _evaluate(paths, tmp_path / "x.tsv", mask_path=empty)
    record = json.loads((tmp_path / "in" / "c1_geometry.json").read_text())
    del record["target_normalisation"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(record))
    with pytest.raises(InputError, match="target_normalisation"):
        _evaluate({**paths, "geometry": str(bad)}, tmp_path / "x.tsv")
    bad.write_text("{not json")
    with pytest.raises(InputError, match="geometry record"):
        _evaluate({**paths, "geometry": str(bad)}, tmp_path / "x.tsv")
    assert not (tmp_path / "x.tsv").exists()


# ------------------------------------------------------------------ tables


def _case_tsv(path, case, mae, ssim=0.8):
    row = {
        "case": case,
        "mae": mae,
        "mse": mae**2,
        "psnr": 20.0,
        "ssim": ssim,
        "baseline_mae": 1.0,
        "baseline_ssim": 0.3,
        "ceiling_mae": 0.05,
        "ceiling_ssim": 0.97,
        "baseline_mse": 1.2,
        "baseline_psnr": 10.0,
        "ceiling_mse": 0.01,
        "ceiling_psnr": 35.0,
    }
    pd.DataFrame([row]).to_csv(path, sep="\t", index=False)
    return str(path)


def _splits(path, rows, fold=False):
    df = pd.DataFrame(rows, columns=["case", "subject", "scanner", "split"])
    if fold:
        df["fold"] = [0 if s != "test" else -1 for s in df["split"]]
    df.to_csv(path, sep="\t", index=False)
    return str(path)


def test_per_case_table(tmp_path):
    splits = _splits(
        tmp_path / "splits.tsv",
        [("b", "s2", "DU", "test"), ("a", "s1", "HT", "val"), ("c", "s3", "DU", "train")],
        fold=True,
    )
    tsvs = [_case_tsv(tmp_path / f"{c}.tsv", c, m) for c, m in (("b", 0.3), ("a", 0.2))]
    table = per_case_translation(tsvs, splits, str(tmp_path / "per_case.tsv"))
    assert list(table.columns[: len(PER_CASE_COLUMNS)]) == list(PER_CASE_COLUMNS)
    assert list(table["case"]) == ["a", "b"]
    assert list(table["split"]) == ["val", "test"] and list(table["scanner"]) == ["HT", "DU"]
    assert "fold" in table and "baseline_psnr" in table
    back = pd.read_csv(tmp_path / "per_case.tsv", sep="\t")
    assert list(back.columns) == list(table.columns) and len(back) == 2
    empty = per_case_translation([], splits, str(tmp_path / "empty.tsv"))
    assert empty.empty and list(empty.columns[:12]) == list(PER_CASE_COLUMNS)


def test_per_case_errors(tmp_path):
    splits = _splits(tmp_path / "splits.tsv", [("a", "s1", "HT", "val")])
    out = str(tmp_path / "out.tsv")
    with pytest.raises(InputError, match="not found"):
        per_case_translation([str(tmp_path / "nope.tsv")], splits, out)
    with pytest.raises(InputError, match="missing from the split table"):
        per_case_translation([_case_tsv(tmp_path / "z.tsv", "z", 0.1)], splits, out)
    pd.DataFrame({"case": ["a"], "mae": [0.1]}).to_csv(tmp_path / "bad.tsv", sep="\t")
    with pytest.raises(InputError, match="lack the columns"):
        per_case_translation([str(tmp_path / "bad.tsv")], splits, out)
    a = _case_tsv(tmp_path / "a.tsv", "a", 0.1)
    with pytest.raises(InputError, match="more than once"):
        per_case_translation([a, a], splits, out)
    (tmp_path / "blank.tsv").write_text("")
    with pytest.raises(InputError, match="cannot parse"):
        per_case_translation([str(tmp_path / "blank.tsv")], splits, out)


def _per_case(path, rows):
    cols = ["case", "subject", "scanner", "split", "mae", "mse", "psnr", "ssim"]
    df = pd.DataFrame(rows, columns=cols)
    df["baseline_mae"], df["baseline_ssim"] = 1.0, 0.3
    df["ceiling_mae"], df["ceiling_ssim"] = 0.05, 0.97
    df.to_csv(path, sep="\t", index=False)
    return str(path)


def test_summary_and_selection(tmp_path):
    runs = {
        # best on test, worse on validation: must not be selected
        "unet": _per_case(
            tmp_path / "u.tsv",
            [
                ("a", "a", "DU", "val", 0.30, 0.1, 20, 0.8),
                ("b", "b", "HT", "val", 0.40, 0.2, 19, 0.7),
                ("c", "c", "DU", "test", 0.10, 0.02, 30, 0.9),
            ],
        ),
        "cnn": _per_case(
            tmp_path / "c.tsv",
            [
                ("a", "a", "DU", "val", 0.20, 0.1, 22, 0.8),
                ("b", "b", "HT", "val", 0.30, 0.2, 20, 0.7),
                ("c", "c", "DU", "test", 0.50, 0.3, 15, 0.5),
            ],
        ),
        "same": _per_case(
            tmp_path / "s.tsv",
            [
                ("a", "a", "DU", "val", 0.25, 0.1, 22, 0.8),
                ("b", "b", "HT", "val", 0.25, 0.2, 20, 0.7),
            ],
        ),
    }
    summary_translation(runs, str(tmp_path / "summary.tsv"), str(tmp_path / "comparison.tsv"))
    stats = pd.read_csv(tmp_path / "summary.tsv", sep="\t")
    assert list(stats.columns) == [
        "model",
        "split",
        "scanner",
        "metric",
        "n",
        "mean",
        "std",
        "median",
        "q1",
        "q3",
    ]
    cell = stats.query(
        "model == 'unet' and split == 'val' and scanner == '(all)' and metric == 'mae'"
    )
    assert cell["n"].item() == 2 and cell["mean"].item() == pytest.approx(0.35)
    assert cell["std"].item() == pytest.approx(np.std([0.3, 0.4], ddof=1))
    one = stats.query("model == 'unet' and split == 'val' and scanner == 'DU' and metric == 'mae'")
    assert one["n"].item() == 1 and np.isnan(one["std"].item())
    assert {"baseline_mae", "ceiling_ssim", "psnr"} <= set(stats["metric"])
    comp = pd.read_csv(tmp_path / "comparison.tsv", sep="\t").set_index("model")
    assert comp["selected"].sum() == 1
    # cnn and same tie at val MAE 0.25: the first name in sorted order wins
    assert bool(comp.loc["cnn", "selected"])
    assert comp.loc["cnn", "val_score"] == pytest.approx(0.25)
    assert comp.loc["unet", "test_mae"] == pytest.approx(0.10)
    assert comp.loc["same", "n_test"] == 0 and np.isnan(comp.loc["same", "test_mae"])
    for col in ("val_baseline_mae", "test_ceiling_mae", "val_ssim", "test_psnr"):
        assert col in comp


def test_no_validation_selects_nothing(tmp_path):
    run = _per_case(tmp_path / "u.tsv", [("c", "c", "DU", "test", 0.1, 0.02, 30, 0.9)])
    summary_translation({"unet": run}, str(tmp_path / "s.tsv"), str(tmp_path / "c.tsv"))
    comp = pd.read_csv(tmp_path / "c.tsv", sep="\t")
    assert not comp["selected"].any() and comp["n_val"].item() == 0


# ------------------------------------------------------------------ pictures


def _scored_cases(tmp_path, specs):
    """specs: [(case, split, scanner, noise, size, direction)] -> per-case TSV, cases dict."""
    tsvs, cases, rows = [], {}, []
    for i, (case, split, scanner, noise, size, direction) in enumerate(specs):
        paths, _, _ = make_case(tmp_path / case, case, i, noise, size, direction)
        out = tmp_path / f"{case}.tsv"
        evaluate_translation_case(
            case,
            paths["pred"],
            paths["t2"],
            paths["ceiling"],
            [paths["t1"]],
            paths["geometry"],
            str(out),
        )
        tsvs.append(str(out))
        cases[case] = {
            "input": paths["t1"],
            "pred": paths["pred"],
            "target": paths["t2"],
            "geometry": paths["geometry"],
        }
        rows.append((case, case, scanner, split))
    splits = _splits(tmp_path / "splits.tsv", rows)
    per_case = str(tmp_path / "per_case.tsv")
    per_case_translation(tsvs, splits, per_case)
    return per_case, cases


def test_pictures(tmp_path):
    specs = [
        ("t1a", "test", "DU", 0.05, SIZE, LPS),
        ("t1b", "test", "HT", 0.3, SIZE, RAS),
        ("t1c", "test", "DU", 0.6, (40, 48, 5), LPS),
        ("v1", "val", "HT", 0.2, SIZE, LPS),
    ]
    per_case, cases = _scored_cases(tmp_path, specs)
    out = tmp_path / "cases.png"
    fig = plot_translation_cases(per_case, cases, str(out))
    assert written(out)
    assert suptitle(fig) == "Translation of test cases, by MAE (z-score units)"
    assert titles(fig) == ["input (t1)", "synthetic (t2)", "real (t2)", "|synthetic - real|"]
    shown = list(dict.fromkeys(y.split("\n")[0] for y in ylabels(fig)))
    maes = pd.read_csv(per_case, sep="\t").set_index("case")["mae"]
    by_mae = sorted(["t1a", "t1b", "t1c"], key=lambda c: maes[c])
    assert shown == [f"best: {by_mae[0]}", f"median: {by_mae[1]}", f"worst: {by_mae[2]}"]
    box = tmp_path / "boxes.png"
    fig = plot_translation_boxplots(per_case, str(box), "unet")
    assert written(box)
    assert legend_entries(fig) == ["model", "baseline", "ceiling"]
    assert titles(fig) == [  # splits in their order, then the metrics
        "val: MAE (z-score units) (1 cases)",
        "val: SSIM (1 cases)",
        "val: PSNR (dB) (1 cases)",
        "test: MAE (z-score units) (3 cases)",
        "test: SSIM (3 cases)",
        "test: PSNR (dB) (3 cases)",
    ]
    assert xticklabels(fig.axes[0]) == ["(all)", "DU", "HT"]
    # no test case: falls back to all scored cases
    only_val = {"v1": cases["v1"]}
    out2 = tmp_path / "fallback.png"
    fig = plot_translation_cases(per_case, only_val, str(out2), split="test")
    assert "all scored cases (no scored test case)" in suptitle(fig)
    assert {y.split("\n")[0] for y in ylabels(fig)} == {"best: v1"}
    broken = {"v1": {k: v for k, v in cases["v1"].items() if k != "geometry"}}
    with pytest.raises(InputError, match="case v1.*geometry"):
        plot_translation_cases(per_case, broken, str(tmp_path / "broken.png"))
    assert not (tmp_path / "broken.png").exists()


def test_pictures_of_nothing(tmp_path):
    per_case = per_case_translation(
        [], _splits(tmp_path / "s.tsv", [("a", "a", "DU", "predict")]), str(tmp_path / "p.tsv")
    )
    assert per_case.empty
    for func, args in (
        (plot_translation_cases, ({},)),
        (plot_translation_boxplots, ("unet",)),
    ):
        out = tmp_path / f"{func.__name__}.png"
        if func is plot_translation_cases:
            fig = func(str(tmp_path / "p.tsv"), *args, str(out))
        else:
            fig = func(str(tmp_path / "p.tsv"), str(out), *args)
        assert written(out) and len(texts(fig)) == 1 and "scored" in texts(fig)[0]
