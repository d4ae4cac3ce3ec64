"""Every bad input gets a clear error naming the case, the file and the problem, and
leaves no output behind."""

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from synth import MODS, grid_image, preprocess, write_case

from tumorseg.errors import InputError
from tumorseg.io.sheet import complete_sheet, read_sheet
from tumorseg.tasks.labels import to_internal

SMALL = {
    "size": (60, 70, 40),
    "spacing": (3.0, 3.0, 3.5),
    "origin": (-90.0, -105.0, -70.0),
    "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1),
}


@pytest.fixture
def case(tmp_path):
    return write_case(tmp_path / "data", "bad01", SMALL)


def run(tmp_path, paths, seg="from-paths", convention="brats2017"):
    preprocess("bad01", paths, tmp_path / "out", seg=seg, convention=convention)
    return tmp_path / "out"


def expect_error(tmp_path, paths, fragment, path, **kw):
    with pytest.raises(InputError) as err:
        run(tmp_path, paths, **kw)
    msg = str(err.value)
    assert "case bad01" in msg and str(path) in msg and fragment in msg, msg
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), "half-written output left behind"
    return msg


def test_good_case_runs(tmp_path, case):
    out = run(tmp_path, case)
    assert sorted(p.name for p in out.iterdir()) == [
        "geometry.json",
        "image.npy",
        "label.npy",
        "slices.tsv",
    ]


def test_missing_file(tmp_path, case):
    missing = case["t1"].replace("t1", "t1_missing")
    expect_error(tmp_path, case | {"t1": missing}, "t1 file not found", missing)


def test_unreadable_file(tmp_path, case):
    with open(case["t2"], "wb") as fh:
        fh.write(b"this is not an image")
    expect_error(tmp_path, case, "cannot read the t2 image", case["t2"])


def test_corrupt_gzip(tmp_path, case):
    data = open(case["flair"], "rb").read()
    with open(case["flair"], "wb") as fh:
        fh.write(data[: len(data) // 2])
    msg = expect_error(tmp_path, case, "cannot read the flair image", case["flair"])
    assert "gzip" in msg


def test_modalities_on_different_grids(tmp_path, case):
    img = sitk.ReadImage(case["t1ce"])
    img.SetSpacing((2.0, 3.0, 3.5))
    sitk.WriteImage(img, case["t1ce"])
    msg = expect_error(tmp_path, case, "t1ce lies on another grid than flair", case["t1ce"])
    assert "60x70x40 voxels of 2x3x3.5 mm" in msg


def test_seg_on_a_different_grid(tmp_path, case):
    img = sitk.ReadImage(case["seg"])
    img.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(img, case["seg"])
    expect_error(tmp_path, case, "seg lies on another grid", case["seg"])


def test_wrong_dimensionality(tmp_path, case):
    sitk.WriteImage(sitk.Image([60, 70], sitk.sitkInt16), case["t1"])
    expect_error(tmp_path, case, "t1 image is 2D (60x70), expected 3D", case["t1"])


def test_nan_voxels(tmp_path, case):
    arr = sitk.GetArrayFromImage(sitk.ReadImage(case["t2"])).astype(np.float32)
    arr[10, 20, 30] = np.nan
    arr[11, 20, 30] = np.inf
    sitk.WriteImage(grid_image(SMALL, arr), case["t2"])
    expect_error(tmp_path, case, "t2 image has 2 NaN or infinite voxels", case["t2"])


def test_label_values_outside_the_convention(tmp_path, case):
    arr = sitk.GetArrayFromImage(sitk.ReadImage(case["seg"]))
    arr[0, 0, 0] = 3  # 3 is not a BraTS 2017-2021 label
    sitk.WriteImage(grid_image(SMALL, arr), case["seg"])
    msg = expect_error(tmp_path, case, "label values [3] are outside the brats2017", case["seg"])
    assert "allowed: [0, 1, 2, 4]" in msg
    arr[arr == 4] = 3  # the same file in the BraTS 2023 convention is fine
    sitk.WriteImage(grid_image(SMALL, arr), case["seg"])
    run(tmp_path, case, convention="brats2023")


def test_empty_brain(tmp_path, case):
    for mod in MODS:
        sitk.WriteImage(grid_image(SMALL, np.zeros((40, 70, 60), np.int16)), case[mod])
    expect_error(tmp_path, case, "the brain is empty", case["flair"])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32])
def test_to_internal_checks_every_dtype(dtype):
    arr = np.array([0, 1, 2, 4, 4], dtype=dtype)
    np.testing.assert_array_equal(to_internal(arr, "brats2017"), [0, 1, 2, 3, 3])
    with pytest.raises(InputError, match=r"values \[5\]"):
        to_internal(np.array([0, 5], dtype=dtype), "brats2017", "c", "f.nii.gz")


# ------------------------------------------------------------------- sample sheet


def sheet(tmp_path, rows, columns=None):
    df = pd.DataFrame(rows, columns=columns)
    path = tmp_path / "samples.tsv"
    df.to_csv(path, sep="\t", index=False)
    return path


def good_row(case_paths, case="bad01"):
    return {"case": case, **{m: case_paths[m] for m in MODS}, "seg": case_paths["seg"]}


def complete(path):
    return complete_sheet(read_sheet(path), path.parent, MODS, r"^([A-Za-z]+)", path)


def test_sheet_is_completed(tmp_path, case):
    row = good_row(case)
    row["flair"] = "data/bad01/bad01_flair.nii.gz"  # relative to the sheet's folder
    df = complete(sheet(tmp_path, [row]))
    assert df.loc["bad01", "subject"] == "bad01" and df.loc["bad01", "scanner"] == "bad"
    assert df.loc["bad01", "flair"] == case["flair"] and bool(df.loc["bad01", "labelled"])


def test_duplicate_case_ids(tmp_path, case):
    path = sheet(tmp_path, [good_row(case), good_row(case)])
    with pytest.raises(InputError, match="duplicate case IDs: bad01") as err:
        complete(path)
    assert str(path) in str(err.value)


def test_unsafe_case_id(tmp_path, case):
    path = sheet(tmp_path, [good_row(case, case="../evil case")])
    with pytest.raises(InputError, match=r"case ID '../evil case' has unsafe characters"):
        complete(path)


def test_sheet_without_required_columns(tmp_path, case):
    path = sheet(tmp_path, [{"id": "x", "flair": case["flair"]}])
    with pytest.raises(InputError, match="no `case` column"):
        complete(path)
    path = sheet(tmp_path, [{"case": "x", "flair": case["flair"]}])
    with pytest.raises(InputError, match=r"lacks the modality columns \['t1', 't1ce', 't2'\]"):
        complete(path)


def test_sheet_missing_files_all_reported_at_once(tmp_path, case):
    rows = [good_row(case), good_row(case, "other") | {"t2": "nowhere/t2.nii.gz", "seg": ""}]
    rows[0]["flair"] = "gone.nii.gz"
    with pytest.raises(InputError) as err:
        complete(sheet(tmp_path, rows))
    msg = str(err.value)
    assert "case bad01" in msg and "gone.nii.gz: flair file not found" in msg
    assert "case other" in msg and "nowhere/t2.nii.gz: t2 file not found" in msg


def test_unsupported_extension(tmp_path, case):
    shutil.copy(case["flair"], tmp_path / "flair.png")
    row = good_row(case) | {"flair": str(tmp_path / "flair.png")}
    with pytest.raises(InputError, match="flair is not a supported image file"):
        complete(sheet(tmp_path, [row]))


def test_gzip_helper_is_only_for_gz(tmp_path):
    # a plain .nii that is not an image still gets a one-line reason
    p = tmp_path / "x.nii"
    p.write_bytes(gzip.compress(b"abc"))
    with pytest.raises(InputError, match="cannot read the t1 image"):
        from tumorseg.io.images import read_image

        read_image(p, "c", "t1")
