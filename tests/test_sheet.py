"""tumorseg-sheet: every dataset layout, as a function and as a CLI; complete_sheet's slice
stacks and mask column. Folders hold empty files: only names matter here."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tumorseg.errors import InputError
from tumorseg.io.layouts import scan_folder
from tumorseg.io.sheet import (
    DEFAULT_SCANNER_REGEX,
    complete_sheet,
    main,
    read_sheet,
    scanner_from_case,
    sheet_from_folder,
)
from tumorseg.io.slices import is_stack

SRC = Path(__file__).resolve().parents[1] / "src"
MODS = ["flair", "t1", "t1ce", "t2"]
NEW = {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w"}


def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def brats_folder(root, cases, sep="_", names=None, suffix=".nii.gz", seg=True):
    names = names or {m: m for m in MODS}
    for case in cases:
        for mod in MODS:
            touch(root / case / f"{case}{sep}{names[mod]}{suffix}")
        if seg:
            touch(root / case / f"{case}{sep}seg{suffix}")
    return root


def lgg_folder(root, patients, n_slices=3, masks=True):
    for p in patients:
        for k in range(1, n_slices + 1):
            touch(root / p / f"{p}_{k}.tif")
            if masks:
                touch(root / p / f"{p}_{k}_mask.tif")
    return root


def decathlon_folder(root, train=("BRATS_001", "BRATS_002"), test=("BRATS_750",)):
    for case in train:
        for sub in ("imagesTr", "labelsTr"):
            touch(root / sub / f"{case}.nii.gz")
            touch(root / sub / f"._{case}.nii.gz", b"\x00\x05\x16\x07junk")
    for case in test:
        touch(root / "imagesTs" / f"{case}.nii.gz")
        touch(root / "imagesTs" / f"._{case}.nii.gz", b"\x00\x05\x16\x07junk")
    touch(root / "dataset.json", b"{}")
    touch(root / ".DS_Store", b"junk")
    return root


def run_cli(*args):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-m", "tumorseg.io.sheet", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )


def cli_sheet(folder, out, *extra):
    """Run the CLI; return the written sheet and its stdout."""
    res = run_cli(folder, "-o", out, *extra)
    assert res.returncode == 0, res.stderr
    return read_sheet(out), res.stdout


def complete(sheet_path, modalities=MODS):
    return complete_sheet(
        read_sheet(sheet_path), sheet_path.parent, modalities, DEFAULT_SCANNER_REGEX, sheet_path
    )


# --------------------------------------------------------------------------- BraTS


def test_brats2021_folder(tmp_path):
    root = brats_folder(tmp_path / "data", ["TCGA-DU-7294", "TCGA-FG-6692"])
    (root / "TCGA-FG-6692" / "TCGA-FG-6692_seg.nii.gz").unlink()
    touch(root / "README.md")
    scan = scan_folder(root)
    assert scan.layout.name == "brats2021" and scan.layout.label_convention == "brats2017"
    assert list(scan.table.columns) == ["case", *MODS, "seg"]
    assert list(scan.table["seg"].astype(bool)) == [True, False]

    out = tmp_path / "config" / "samples.tsv"
    sheet, stdout = cli_sheet(root, out)
    assert "set label_convention: brats2017" in stdout
    assert sheet.loc[0, "t1ce"] == "../data/TCGA-DU-7294/TCGA-DU-7294_t1ce.nii.gz"
    done = complete(out)
    assert done.loc["TCGA-DU-7294", "scanner"] == "DU"
    assert done.loc["TCGA-DU-7294", "flair"] == str(root / "TCGA-DU-7294/TCGA-DU-7294_flair.nii.gz")
    assert not done.loc["TCGA-FG-6692", "labelled"]


@pytest.mark.parametrize(
    "sep, names",
    [("-", NEW), ("_", NEW), ("-", {m: m for m in MODS})],
    ids=["dash-new", "underscore-new", "dash-old"],
)
def test_brats2023_folder(tmp_path, sep, names):
    cases = ["BraTS-GLI-00001-000", "BraTS-GLI-00001-001", "BraTS-GLI-00002-000"]
    root = brats_folder(tmp_path / "data", cases, sep=sep, names=names)
    scan = scan_folder(root)
    assert scan.layout.name == "brats2023" and scan.layout.label_convention == "brats2023"
    row = scan.table.iloc[0]
    assert row["t1ce"] == str(root / cases[0] / f"{cases[0]}{sep}{names['t1ce']}.nii.gz")
    assert row["seg"] == str(root / cases[0] / f"{cases[0]}{sep}seg.nii.gz")
    assert list(scan.table["subject"]) == ["BraTS-GLI-00001"] * 2 + ["BraTS-GLI-00002"]

    out = tmp_path / "samples.tsv"
    sheet, stdout = cli_sheet(root, out)
    assert "BraTS 2023+ layout: set label_convention: brats2023 in your config" in stdout
    assert sheet.loc[0, "flair"] == f"data/{cases[0]}/{cases[0]}{sep}{names['flair']}.nii.gz"
    done = complete(out)
    assert done.loc[cases[1], "subject"] == "BraTS-GLI-00001"


@pytest.mark.parametrize("suffix", [".mnc", ".mha", ".nrrd"])
def test_other_formats_in_brats_folders(tmp_path, suffix):
    root = brats_folder(
        tmp_path / "data", ["siteA_sub001_ses1", "siteB_sub002_ses1"], suffix=suffix
    )
    assert scan_folder(root).layout.name == "brats2021"
    sheet, _ = cli_sheet(root, tmp_path / "s.tsv")
    assert all(v.endswith(suffix) for v in sheet[[*MODS, "seg"]].to_numpy().ravel())
    done = complete(tmp_path / "s.tsv")
    assert list(done["scanner"]) == ["siteA", "siteB"]


def test_brats_modalities_flag(tmp_path):
    root = tmp_path / "data"
    for mod in ("t1", "t2", "seg"):
        touch(root / "c1" / f"c1_{mod}.nii.gz")
    assert list(sheet_from_folder(root, ["t1", "t2"]).columns) == ["case", "t1", "t2", "seg"]
    sheet, _ = cli_sheet(root, tmp_path / "s.tsv", "--modalities", "t1,t2")
    assert list(sheet.columns) == ["case", "t1", "t2", "seg"]


def test_missing_modality_names_the_case_and_the_file(tmp_path):
    root = brats_folder(tmp_path / "data", ["c1", "c2"])
    (root / "c2" / "c2_t1ce.nii.gz").unlink()
    with pytest.raises(InputError, match=r"no t1ce file found \(expected c2_t1ce.nii.gz") as err:
        scan_folder(root)
    assert err.value.case == "c2"
    new = brats_folder(tmp_path / "new", ["BraTS-GLI-00001-000"], sep="-", names=NEW)
    (new / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-t2w.nii.gz").unlink()
    with pytest.raises(InputError, match=r"no t2 file found \(expected BraTS-GLI-00001-000-t2w"):
        scan_folder(new)
    res = run_cli(root, "-o", tmp_path / "s.tsv")
    assert res.returncode == 1 and "case c2" in res.stderr and "c2_t1ce.nii.gz" in res.stderr
    assert not (tmp_path / "s.tsv").exists()


def test_two_files_for_one_modality(tmp_path):
    root = brats_folder(tmp_path / "data", ["c1"])
    touch(root / "c1" / "c1-t2f.nii.gz")
    with pytest.raises(InputError, match="more than one flair file"):
        scan_folder(root)


# --------------------------------------------------------------------------- Decathlon


def test_decathlon_folder_ignores_appledouble_twins(tmp_path):
    root = decathlon_folder(tmp_path / "Task01_BrainTumour")
    scan = scan_folder(root)
    assert scan.layout.name == "decathlon" and scan.layout.label_convention == "decathlon"
    assert list(scan.table["case"]) == ["BRATS_001", "BRATS_002", "BRATS_750"]
    assert list(scan.table["seg"].astype(bool)) == [True, True, False]

    out = tmp_path / "samples.tsv"
    sheet, stdout = cli_sheet(root, out)
    assert "set label_convention: decathlon" in stdout
    assert sheet.loc[0, "image"] == "Task01_BrainTumour/imagesTr/BRATS_001.nii.gz"
    assert sheet.loc[0, "seg"] == "Task01_BrainTumour/labelsTr/BRATS_001.nii.gz"
    done = complete(out)
    assert list(done["labelled"]) == [True, True, False]


def test_decathlon_nnunet_channel_suffix(tmp_path):
    touch(tmp_path / "imagesTr" / "BRATS_001_0000.nii.gz")
    touch(tmp_path / "labelsTr" / "BRATS_001.nii.gz")
    table = sheet_from_folder(tmp_path)
    assert list(table["case"]) == ["BRATS_001"]
    assert table.loc[0, "seg"].endswith("labelsTr/BRATS_001.nii.gz")


# --------------------------------------------------------------------------- LGG


def test_lgg_folder(tmp_path):
    root = lgg_folder(tmp_path / "kaggle_3m", ["TCGA_CS_4941_19960909", "TCGA_DU_7008_19830723"])
    lgg_folder(root, ["TCGA_HT_7473_19970826"], n_slices=2, masks=False)
    touch(root / "data.csv", b"Patient,RNASeqCluster\n")
    touch(root / "README.md", b"LGG")
    scan = scan_folder(root)
    assert scan.layout.name == "lgg" and scan.layout.label_convention == "binary"
    table = scan.table.set_index("case")
    assert table.loc["TCGA_CS_4941_19960909", "subject"] == "TCGA_CS_4941"
    assert list(table["scanner"]) == ["CS", "DU", "HT"]
    assert table.loc["TCGA_HT_7473_19970826", "seg"] == ""

    out = tmp_path / "config" / "samples.tsv"
    sheet, stdout = cli_sheet(root, out)
    assert "set label_convention: binary" in stdout
    row = sheet.set_index("case").loc["TCGA_CS_4941_19960909"]
    assert row["image"] == "../kaggle_3m/TCGA_CS_4941_19960909" == row["seg"]
    done = complete(out, ["t1", "flair", "t1ce"])
    assert list(done["labelled"]) == [True, True, False]
    assert done.loc["TCGA_DU_7008_19830723", "image"] == str(root / "TCGA_DU_7008_19830723")
    assert done.loc["TCGA_DU_7008_19830723", "scanner"] == "DU"
    assert is_stack(done.loc["TCGA_DU_7008_19830723", "image"])


def test_lgg_scanner_flag_overrides_the_tss_code(tmp_path):
    root = lgg_folder(tmp_path / "data", ["TCGA_CS_4941_19960909"])
    sheet, _ = cli_sheet(root, tmp_path / "s.tsv", "--scanner", "siteX")
    assert list(sheet["scanner"]) == ["siteX"]


@pytest.mark.parametrize(
    "name", ["TCGA_CS_4941_19960909_01.tif", "slice_3.tif", "TCGA_CS_4941_19960909_2_seg.tif"]
)
def test_lgg_bad_file_name(tmp_path, name):
    root = lgg_folder(tmp_path / "data", ["TCGA_CS_4941_19960909"])
    touch(root / "TCGA_CS_4941_19960909" / name)
    with pytest.raises(InputError, match="not a slice of this patient") as err:
        scan_folder(root)
    assert err.value.case == "TCGA_CS_4941_19960909"
    assert err.value.path == str(root / "TCGA_CS_4941_19960909" / name)


def test_lgg_slice_without_a_mask(tmp_path):
    p = "TCGA_CS_4941_19960909"
    root = lgg_folder(tmp_path / "data", [p], n_slices=4)
    (root / p / f"{p}_3_mask.tif").unlink()
    with pytest.raises(InputError, match=f"slice without a mask {p}_3_mask.tif") as err:
        scan_folder(root)
    assert err.value.path == str(root / p / f"{p}_3.tif")


# --------------------------------------------------------------------------- errors


def test_empty_folder(tmp_path):
    (tmp_path / "data").mkdir()
    touch(tmp_path / "data" / ".DS_Store")
    with pytest.raises(InputError, match="the folder is empty; expected one of the layouts"):
        scan_folder(tmp_path / "data")
    with pytest.raises(InputError, match="not a folder"):
        scan_folder(tmp_path / "nowhere")


def test_unknown_layout_says_what_was_tried(tmp_path):
    touch(tmp_path / "flat" / "a_flair.nii.gz")
    with pytest.raises(InputError) as err:
        scan_folder(tmp_path / "flat")
    msg = str(err.value)
    assert "no known dataset layout" in msg and "give each case its own folder" in msg
    for title in ("BraTS 2017-2021", "BraTS 2023+", "Medical Segmentation Decathlon", "LGG"):
        assert title in msg
    assert "<ID>-{t2f,t1n,t1c,t2w}.nii.gz" in msg
    touch(tmp_path / "pngs" / "c1" / "c1_flair.png")
    with pytest.raises(InputError, match="no known dataset layout"):
        scan_folder(tmp_path / "pngs")
    res = run_cli(tmp_path / "pngs", "-o", tmp_path / "s.tsv")
    assert res.returncode == 1 and "no known dataset layout" in res.stderr


def test_dataset_one_level_down(tmp_path):
    lgg_folder(tmp_path / "lgg-mri-segmentation" / "kaggle_3m", ["TCGA_CS_4941_19960909"])
    with pytest.raises(InputError, match="point at .*kaggle_3m"):
        scan_folder(tmp_path / "lgg-mri-segmentation")


def test_case_folder_without_images(tmp_path):
    root = brats_folder(tmp_path / "data", ["c1"])
    touch(root / "c2" / "notes.txt")
    with pytest.raises(InputError, match="case folders without image files: c2"):
        scan_folder(root)


def test_mixed_layouts(tmp_path):
    root = brats_folder(tmp_path / "a", ["c1"])
    lgg_folder(root, ["TCGA_CS_4941_19960909"])
    with pytest.raises(InputError, match="mixed layouts: tif slice folders"):
        scan_folder(root)

    root = decathlon_folder(tmp_path / "b")
    brats_folder(root, ["c1"])
    with pytest.raises(InputError, match="mixed layouts: Decathlon folders"):
        scan_folder(root)

    root = brats_folder(tmp_path / "c", ["c1"])
    brats_folder(root, ["BraTS-GLI-00001-000"], sep="-", names=NEW)
    with pytest.raises(InputError, match="mixed layouts: BraTS 2017-2021 names in cases c1"):
        scan_folder(root)

    root = brats_folder(tmp_path / "d", ["c1"])
    touch(root / "c1" / "c1_5.tif")
    with pytest.raises(InputError, match="both tif slices and image volumes"):
        scan_folder(root)
    res = run_cli(root, "-o", tmp_path / "s.tsv")
    assert res.returncode == 1 and "mixed layouts" in res.stderr


def test_main_as_a_function(tmp_path, capsys):
    root = brats_folder(tmp_path / "data", ["c1"])
    assert main([str(root), "-o", str(tmp_path / "s.tsv")]) == 0
    assert "BraTS 2017-2021 layout: set label_convention: brats2017" in capsys.readouterr().out
    assert main([str(tmp_path / "none"), "-o", str(tmp_path / "t.tsv")]) == 1


# --------------------------------------------------------------------------- complete_sheet


def test_default_scanner_regex():
    assert scanner_from_case("TCGA_CS_4941_19960909", DEFAULT_SCANNER_REGEX) == "CS"
    assert scanner_from_case("TCGA-DU-7294", DEFAULT_SCANNER_REGEX) == "DU"
    assert scanner_from_case("siteA_sub001_ses1", DEFAULT_SCANNER_REGEX) == "siteA"
    assert scanner_from_case("case", DEFAULT_SCANNER_REGEX) == "unknown"


def test_is_stack(tmp_path):
    assert is_stack(tmp_path) and is_stack(str(tmp_path))
    assert not is_stack(touch(tmp_path / "a.nii.gz")) and not is_stack("")
    assert not is_stack(tmp_path / "nowhere")


def _complete(df, sheet_dir, modalities=MODS, check_files=True):
    return complete_sheet(df, sheet_dir, modalities, DEFAULT_SCANNER_REGEX, None, check_files)


def test_complete_sheet_with_folder_images(tmp_path):
    (tmp_path / "p1").mkdir()
    (tmp_path / "p2").mkdir()
    touch(tmp_path / "p2_seg.nii.gz")
    df = pd.DataFrame({"case": ["p1", "p2"], "image": ["p1", "p2"], "seg": ["p1", "p2_seg.nii.gz"]})
    done = _complete(df, tmp_path, ["t1", "flair", "t1ce"])
    assert list(done["image"]) == [str(tmp_path / "p1"), str(tmp_path / "p2")]
    assert list(done["seg"]) == [str(tmp_path / "p1"), str(tmp_path / "p2_seg.nii.gz")]
    assert list(done["mask"]) == ["", ""] and list(done["labelled"]) == [True, True]

    df = pd.DataFrame({"case": ["p1", "p3"], "image": ["p1", "p3"], "seg": ["", ""]})
    with pytest.raises(InputError, match="p3: image folder not found"):
        _complete(df, tmp_path)
    # without checking files, a value without an image suffix is a folder
    done = _complete(df, tmp_path, check_files=False)
    assert done.loc["p3", "image"] == str(tmp_path / "p3")


def test_complete_sheet_mixing_files_and_folders(tmp_path):
    (tmp_path / "p1").mkdir()
    touch(tmp_path / "c2.nii.gz")
    touch(tmp_path / "c3.nii.gz")
    df = pd.DataFrame(
        {"case": ["p1", "c2", "c3"], "image": ["p1", "c2.nii.gz", "c3.nii.gz"], "seg": [""] * 3}
    )
    with pytest.raises(InputError) as err:
        _complete(df, tmp_path)
    msg = str(err.value)
    assert "mixes slice-stack folders (cases p1) and image files (cases c2, c3)" in msg


def test_complete_sheet_folder_in_a_file_column(tmp_path):
    (tmp_path / "p1").mkdir()
    files = {m: str(touch(tmp_path / f"c1_{m}.nii.gz")) for m in MODS}
    df = pd.DataFrame([{"case": "c1", **files, "seg": "p1"}])
    with pytest.raises(InputError, match="seg is a folder, not an image file"):
        _complete(df, tmp_path)
    df = pd.DataFrame([{"case": "c1", **files, "t2": "p1"}])
    with pytest.raises(InputError, match="t2 is a folder, not an image file"):
        _complete(df, tmp_path)


def test_complete_sheet_mask_column(tmp_path):
    files = {m: f"c1_{m}.nii.gz" for m in MODS}
    for name in files.values():
        touch(tmp_path / name)
    touch(tmp_path / "masks" / "c1_brain.mha")
    rows = [
        {"case": "c1", **files, "mask": "masks/c1_brain.mha"},
        {"case": "c2", **files, "mask": ""},
    ]
    done = _complete(pd.DataFrame(rows), tmp_path)
    assert list(done["mask"]) == [str(tmp_path / "masks/c1_brain.mha"), ""]
    assert list(done["seg"]) == ["", ""]

    rows[1]["mask"] = "masks/c2_brain.png"
    rows.append({"case": "c3", **files, "mask": "masks/gone.nii.gz"})
    with pytest.raises(InputError) as err:
        _complete(pd.DataFrame(rows), tmp_path)
    msg = str(err.value)
    assert "case c2: masks/c2_brain.png: mask is not a supported image file" in msg
    assert "case c3: " + str(tmp_path / "masks/gone.nii.gz") + ": mask file not found" in msg


def test_complete_sheet_keeps_todays_messages(tmp_path):
    touch(tmp_path / "flair.png")
    files = {m: f"{m}.nii.gz" for m in MODS}
    df = pd.DataFrame([{"case": "c1", **files, "flair": "flair.png"}])
    with pytest.raises(InputError) as err:
        _complete(df, tmp_path)
    msg = str(err.value)
    assert "flair is not a supported image file" in msg and "t1 file not found" in msg
    df = pd.DataFrame([{"case": "c1", **files, "t2": ""}])
    with pytest.raises(InputError, match="case c1: no file given for t2"):
        _complete(df, tmp_path, check_files=False)
