"""BraTS lesion-wise metrics and the pooled HD95 against the official BraTS evaluation
(``brats-evaluation`` on panoptica), run in a subprocess from ``.venv/reference``
(requirements-reference.txt; the README's test command installs it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from brats_reference import official

from tumorseg.evaluation.lesions import LESION_HD95_MISSED, lesion_metrics, lesion_table
from tumorseg.evaluation.scoring import evaluate_case
from tumorseg.tasks.labels import as_label_map

SHAPE = (40, 44, 36)
NETC, SNFH, ET = 1, 2, 3  # BraTS 2023 values, as the package's configs take them


def _cube(arr, corner, size, value):
    z, y, x = corner
    arr[z : z + size, y : y + size, x : x + size] = value


def _tumour(arr, corner, size, core=True):
    """An edema cube with a necrotic/enhancing core: one lesion in WT, TC and ET."""
    _cube(arr, corner, size, SNFH)
    if core and size >= 5:
        inner = tuple(c + size // 4 for c in corner)
        _cube(arr, inner, size // 2, ET)
        _cube(arr, inner, max(size // 4, 1), NETC)


def _blobs(rng, n):
    arr = np.zeros(SHAPE, np.uint8)
    zz, yy, xx = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    for _ in range(n):
        c = rng.integers(4, np.array(SHAPE) - 4)
        r = rng.uniform(1.0, 4.5)
        ball = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r
        arr[ball] = rng.choice([NETC, SNFH, ET])
    return arr


def constructed_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``name -> (prediction, reference)``: the situations the issue names, and random ones."""
    cases = {}
    ref, pred = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    for corner, size in (((3, 3, 3), 8), ((20, 25, 4), 10), ((5, 30, 22), 6)):
        _tumour(ref, corner, size)
    _tumour(pred, (4, 3, 3), 8)  # shifted one voxel
    _tumour(pred, (20, 24, 5), 9)  # shifted and smaller
    _tumour(pred, (5, 30, 23), 6, core=False)  # edema only: a missed core
    cases["several_lesions"] = pred, ref
    pred = ref.copy()
    pred[5:11, 30:36, 22:28] = 0
    cases["missed_lesion"] = pred, ref
    pred = ref.copy()
    _cube(pred, (30, 5, 28), 4, ET)  # a 64-voxel false positive
    _cube(pred, (34, 38, 2), 2, SNFH)  # an 8-voxel one
    cases["false_positives"] = pred, ref
    cases["empty_reference"] = ref, np.zeros(SHAPE, np.uint8)
    cases["empty_prediction"] = np.zeros(SHAPE, np.uint8), ref
    cases["both_empty"] = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    ref, pred = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    _cube(ref, (5, 5, 5), 5, ET)
    _cube(ref, (10, 10, 10), 5, ET)  # touches the first at one corner: one lesion (26-conn.)
    _cube(ref, (20, 5, 5), 5, ET)
    _cube(ref, (20, 5, 10), 5, SNFH)  # shares a face with the one before: one WT lesion
    _cube(pred, (5, 5, 6), 9, ET)  # one predicted lesion over both touching cubes
    _cube(pred, (20, 6, 5), 5, ET)
    _cube(pred, (21, 6, 11), 3, NETC)  # inside the edema: a TC false positive
    cases["touching_lesions"] = pred, ref
    rng = np.random.default_rng(7)
    for i in range(3):
        cases[f"random_{i}"] = _blobs(rng, 6), _blobs(rng, 5)
    # small reference lesions (under METS_MIN_VOLUME) beside large ones, for mets
    ref, pred = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    _cube(ref, (3, 3, 3), 2, ET)  # 8 mm^3, matched
    _cube(ref, (3, 20, 3), 2, ET)  # 8 mm^3, missed
    _cube(ref, (20, 20, 20), 6, ET)  # large, matched
    _cube(ref, (30, 3, 25), 4, ET)  # 64 mm^3, missed
    _cube(pred, (3, 3, 4), 2, ET)
    _cube(pred, (21, 20, 20), 6, ET)
    _cube(pred, (10, 35, 10), 3, ET)  # false positive
    cases["small_and_large"] = pred, ref
    return cases


def _write(path: Path, arr: np.ndarray) -> str:
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))  # 1-mm grid: BraTS space
    return str(path)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Ours (per case and region, through :func:`evaluate_case`) and the official tables."""
    tmp = tmp_path_factory.mktemp("lesions")
    files = {}
    for name, (pred, ref) in constructed_cases().items():
        files[name] = (
            _write(tmp / f"{name}_pred.nii.gz", pred),
            _write(tmp / f"{name}_ref.nii.gz", ref),
        )
    ours = {}
    for challenge in ("gli", "mets"):
        for name, (p, r) in files.items():
            out = tmp / challenge / f"{name}.tsv"
            evaluate_case(name, p, r, None, "brats2023", str(out), lesion_wise=challenge)
            ours[challenge, name] = pd.read_csv(out, sep="\t").set_index("region")
    return ours, {c: official(c, files, tmp) for c in ("gli", "mets")}


def _official_hd95(value: float) -> float:
    # where the package gives an infinite lesion HD95 its parser passes it on; we write the
    # parser's own 373 mm penalty (module docstring of tumorseg.evaluation.lesions)
    return LESION_HD95_MISSED if np.isinf(value) else value


@pytest.mark.parametrize("challenge", ["gli", "mets"])
def test_lesion_wise_metrics_equal_the_official_evaluation(scored, challenge):
    ours, theirs = scored
    compared = 0
    for name in constructed_cases():
        row = theirs[challenge].loc[name]
        for region in ("WT", "TC", "ET"):
            mine, g = ours[challenge, name].loc[region], region.lower()
            for col, their_col in (
                ("lesion_tp", "all_instance_tp"),
                ("lesion_fp", "all_instance_fp"),
                ("lesion_fn", "all_instance_fn"),
                ("lesion_f1", "all_instance_f1"),
                ("lesion_dice", "lesionwise_dsc_mean"),
            ):
                expected = row[f"{their_col}_{g}"]
                assert mine[col] == pytest.approx(expected, nan_ok=True), (name, region, col)
            expected = _official_hd95(row[f"lesionwise_hd95_mean_{g}"])
            assert mine["lesion_hd95"] == pytest.approx(expected, nan_ok=True), (name, region)
            compared += 1
    assert compared == 3 * len(constructed_cases())
    # the situations are really there: misses, false positives, empty lesion-wise cells
    gli = theirs["gli"]
    assert gli["all_instance_fn_wt"].sum() >= 3 and gli["all_instance_fp_tc"].sum() >= 3
    assert gli["lesionwise_dsc_mean_et"].isna().any()
    # the mets parameters change the figure where small lesions and false positives are
    small_and_large = [ours[c, "small_and_large"].loc["ET", "lesion_dice"] for c in ("gli", "mets")]
    assert small_and_large[0] != pytest.approx(small_and_large[1])


def test_whole_image_dice_and_pooled_hd95_equal_the_official_global_ones(scored):
    ours, theirs = scored
    gli = theirs["gli"]
    compared = 0
    for name in constructed_cases():
        for region in ("WT", "TC", "ET"):
            mine, g = ours["gli", name].loc[region], region.lower()
            their_dice, their_hd = (
                gli.loc[name, f"global_dsc_{g}"],
                gli.loc[name, f"global_hd95_{g}"],
            )
            if np.isnan(their_dice):  # neither has the region: the package leaves it empty
                assert mine["dice"] == 1.0 and mine["hd95_pooled"] == 0.0
                continue
            assert mine["dice"] == pytest.approx(their_dice), (name, region)
            if mine["dice"] > 0:
                assert mine["hd95_pooled"] == pytest.approx(their_hd), (name, region)
                compared += 1
            elif mine["volume_pred"] and mine["volume_ref"]:
                # no overlap at all: the package writes its penalty, we keep the distance
                assert their_hd == 373 and 0 < mine["hd95_pooled"] < 373, (name, region)
            else:  # one side empty: the package's parser writes 373, we 373.13 (HD95_EMPTY)
                assert their_hd == 373 and mine["hd95_pooled"] == pytest.approx(373.13)
    assert compared >= 15


def test_mets_leaves_out_small_reference_lesions():
    ref = np.zeros((20, 20, 20), bool)
    pred = np.zeros_like(ref)
    ref[2:4, 2:4, 2:4] = True  # 8 mm^3: under the 20 mm^3 threshold, missed
    ref[10:14, 10:14, 10:14] = True  # 64 mm^3, predicted exactly
    pred[10:14, 10:14, 10:14] = True
    gli = lesion_metrics(pred, ref, (1.0, 1.0, 1.0), "gli")
    mets = lesion_metrics(pred, ref, (1.0, 1.0, 1.0), "mets")
    assert (gli["lesion_tp"], gli["lesion_fn"], gli["lesion_dice"]) == (1, 1, 1.0)
    assert mets["lesion_dice"] == 1.0 and mets["lesion_hd95"] == 0.0
    # in 0.5-mm voxels the large lesion is 8 mm^3 too: no lesion counts, the cells are empty
    small = lesion_metrics(pred, ref, (0.5, 0.5, 0.5), "mets")
    assert np.isnan(small["lesion_dice"]) and np.isnan(small["lesion_hd95"])


def test_lesion_hd95_is_in_mm_along_the_right_axis():
    ref = np.zeros((12, 12, 12), bool)
    ref[3:7, 3:7, 3:7] = True
    pred = np.roll(ref, 2, axis=0)  # two steps along z
    for spacing, mm in (((3.0, 1.0, 1.0), 6.0), ((1.0, 1.0, 3.0), 2.0)):
        got = lesion_metrics(pred, ref, spacing)
        assert got["lesion_tp"] == 1 and got["lesion_hd95"] == pytest.approx(mm)


def test_lesion_columns_only_for_brats_maps(tmp_path):
    ref = np.zeros((6, 6, 6), np.uint8)
    ref[2:4, 2:4, 2:4] = 1
    for labels, expected in (("binary", False), ("brats2017", True)):
        p = _write(tmp_path / "p.nii.gz", ref)
        out = tmp_path / f"{labels}.tsv"
        evaluate_case("c", p, p, None, labels, str(out), lesion_wise="gli")
        assert ("lesion_dice" in pd.read_csv(out, sep="\t").columns) == expected
    out = tmp_path / "off.tsv"
    evaluate_case("c", p, p, None, "brats2017", str(out), lesion_wise="none")
    assert "lesion_dice" not in pd.read_csv(out, sep="\t").columns


def test_lesion_table_regions_follow_the_label_map():
    labels = as_label_map("brats2017")
    classes = np.zeros((8, 8, 8), np.uint8)
    classes[1:3, 1:3, 1:3] = 2  # edema: WT only
    table = lesion_table(classes, classes, (1.0, 1.0, 1.0), labels, "gli").set_index("region")
    assert list(table.index) == ["WT", "TC", "ET"]
    assert table.loc["WT", "lesion_dice"] == 1.0 and table.loc["WT", "lesion_tp"] == 1
    assert np.isnan(table.loc["ET", "lesion_dice"]) and table.loc["ET", "lesion_tp"] == 0
