"""The demo dataset exported in every layout: read back with the right geometry, recognised
by tumorseg-sheet, deterministic."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from tumorseg.demo import layouts as demo_layouts
from tumorseg.errors import InputError
from tumorseg.io.layouts import BRATS_MODALITIES, scan_folder
from tumorseg.io.sheet import DEFAULT_SCANNER_REGEX, complete_sheet, read_sheet

SRC = Path(__file__).resolve().parents[1] / "src"
MODS = ["flair", "t1", "t1ce", "t2"]
#: 3 subjects on siteA, siteB, siteC (the RAS 1.2 mm grid); the last one unlabelled
ARGS = {"n_subjects": 3, "seed": 7, "shrink": 3}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    tables = {lay: demo_layouts.export(lay, root / lay, **ARGS) for lay in demo_layouts.LAYOUTS}
    return root, tables


def read(path) -> tuple[sitk.Image, np.ndarray]:
    img = sitk.ReadImage(str(path))
    return img, sitk.GetArrayFromImage(img)


def lps_array(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS"))


def brats2021_file(root, case, mod):
    return root / "brats2021" / case / f"{case}_{mod}.nii.gz"


def test_every_export_is_recognised(exported, tmp_path):
    root, tables = exported
    expected = {"minc": "brats2021", "mha": "brats2021", "nrrd": "brats2021"}
    for layout, table in tables.items():
        scan = scan_folder(root / layout)
        assert scan.layout.name == expected.get(layout, layout), layout
        assert scan.layout.label_convention == demo_layouts.LABEL_CONVENTION[layout]
        assert sorted(scan.table["case"]) == sorted(table["id"]), layout
        sheet = tmp_path / f"{layout}.tsv"
        res = subprocess.run(
            [sys.executable, "-m", "tumorseg.io.sheet", str(root / layout), "-o", str(sheet)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(SRC)},
        )
        assert res.returncode == 0, res.stderr
        mods = ["t1", "flair", "t1ce"] if layout == "lgg" else MODS
        done = complete_sheet(read_sheet(sheet), tmp_path, mods, DEFAULT_SCANNER_REGEX, sheet)
        assert list(done["labelled"]) == [True, True, False], layout


def test_brats2021_geometry_is_the_shrunk_demo_grid(exported):
    root, tables = exported
    for rec in tables["brats2021"].itertuples():
        grid = demo_layouts.shrunk_grid(rec.scanner, ARGS["shrink"])
        img, _ = read(brats2021_file(root, rec.case, "t1"))
        assert img.GetSize() == grid["size"]
        assert np.allclose(img.GetSpacing(), grid["spacing"])
        assert np.allclose(img.GetOrigin(), grid["origin"])
        assert np.allclose(img.GetDirection(), grid["direction"])
    siteA = demo_layouts.shrunk_grid("siteA", 2)
    assert siteA["size"] == (120, 120, 78) and siteA["spacing"] == (2.0, 2.0, 2.0)
    assert siteA["origin"] == (0.0, -239.0, 0.0)
    _, seg = read(brats2021_file(root, tables["brats2021"].loc[0, "case"], "seg"))
    assert set(np.unique(seg)) <= {0, 1, 2, 4} and seg.max() > 0


def test_brats2023_names_and_labels(exported):
    root, tables = exported
    rec = tables["brats2023"].iloc[0]
    assert rec["id"] == "BraTS-GLI-00001-000"
    folder = root / "brats2023" / rec["id"]
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{rec['id']}-{n}.nii.gz" for n in ("seg", "t1c", "t1n", "t2f", "t2w")
    ]
    _, old = read(brats2021_file(root, rec["case"], "seg"))
    _, new = read(folder / f"{rec['id']}-seg.nii.gz")
    assert np.array_equal(new, np.where(old == 4, 3, old))
    _, flair = read(brats2021_file(root, rec["case"], "flair"))
    assert np.array_equal(read(folder / f"{rec['id']}-t2f.nii.gz")[1], flair)


def test_decathlon_export(exported):
    root, tables = exported
    top = root / "decathlon"
    meta = json.loads((top / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["numTest"] == 1
    assert meta["modality"] == {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
    case = tables["decathlon"].loc[0, "case"]
    img, arr = read(top / "imagesTr" / f"{case}.nii.gz")
    assert img.GetDimension() == 4 and arr.shape[0] == 4
    for c, mod in enumerate(MODS):
        assert np.array_equal(arr[c], read(brats2021_file(root, case, mod))[1])
    _, seg = read(brats2021_file(root, case, "seg"))
    _, lab = read(top / "labelsTr" / f"{case}.nii.gz")
    assert np.array_equal(lab, np.select([seg == 1, seg == 2, seg == 4], [2, 1, 3], 0))
    twin = top / "imagesTr" / f"._{case}.nii.gz"
    assert twin.read_bytes().startswith(b"\x00\x05\x16\x07") and twin.stat().st_size < 100
    assert (top / "labelsTr" / f"._{case}.nii.gz").is_file()
    unlabelled = tables["decathlon"].loc[2, "case"]
    assert (top / "imagesTs" / f"{unlabelled}.nii.gz").is_file()
    assert (top / "imagesTs" / f"._{unlabelled}.nii.gz").is_file()


def test_minc_export_is_stored_in_another_voxel_order(exported):
    root, tables = exported
    for rec in tables["minc"].itertuples():
        for mod in ("t1", "seg") if rec.labelled else ("t1",):
            path = root / "minc" / rec.case / f"{rec.case}_{mod}.mnc"
            back = sitk.ReadImage(str(path))
            assert not np.allclose(back.GetDirection(), np.eye(3).ravel())
            assert np.array_equal(
                lps_array(path), lps_array(brats2021_file(root, rec.case, mod))
            ), (rec.case, mod)
        assert "integer" in back.GetPixelIDTypeAsString()


@pytest.mark.parametrize("layout, suffix", [("mha", ".mha"), ("nrrd", ".nrrd")])
def test_mha_and_nrrd_exports(exported, layout, suffix):
    root, tables = exported
    case = tables[layout].loc[2, "case"]  # siteC: RAS, 1.2 mm (shrunk)
    files = sorted(p.name for p in (root / layout / case).iterdir())
    assert files == sorted(f"{case}_{m}{suffix}" for m in MODS)  # unlabelled: no seg
    img, arr = read(root / layout / case / f"{case}_t2{suffix}")
    ref, ref_arr = read(brats2021_file(root, case, "t2"))
    assert np.array_equal(arr, ref_arr) and np.allclose(img.GetDirection(), ref.GetDirection())
    assert np.allclose(img.GetOrigin(), ref.GetOrigin())


def test_lgg_export(exported):
    root, tables = exported
    table = tables["lgg"]
    assert all(re.fullmatch(r"TCGA_(CS|DU|HT)_\d{4}_\d{8}", p) for p in table["id"])
    assert [p.split("_")[1] for p in table["id"]] == ["CS", "DU", "HT"]
    for rec in table.itertuples():
        folder = root / "lgg" / rec.id
        names = {p.name for p in folder.iterdir()}
        k = rec.slices
        assert k >= 10
        slices = {f"{rec.id}_{i}.tif" for i in range(1, k + 1)}
        masks = {f"{rec.id}_{i}_mask.tif" for i in range(1, k + 1)} if rec.labelled else set()
        assert names == slices | masks
        img, rgb = read(folder / f"{rec.id}_{k // 2}.tif")
        assert rgb.shape == (256, 256, 3) and rgb.dtype == np.uint8
        assert img.GetNumberOfComponentsPerPixel() == 3
        assert rgb.max() > 200 and rgb[0, 0].tolist() == [0, 0, 0]
    rec = table.iloc[0]
    stack = np.stack(
        [
            read(root / "lgg" / rec.id / f"{rec.id}_{i}_mask.tif")[1]
            for i in range(1, rec.slices + 1)
        ]
    )
    assert stack.dtype == np.uint8 and set(np.unique(stack)) == {0, 255}
    _, seg = read(brats2021_file(root, rec.case, "seg"))
    assert (stack > 0).sum() == (seg > 0).sum()  # the tumour lies inside the kept slices


def test_lgg_slices_look_the_same_way_on_every_grid():
    """siteC (RAS, 1.2 mm) volumes are brought to LPS first: the tumour of a subject lies
    at the same place (in mm from the slice centre) on the siteA and the siteC slices."""
    from tumorseg.demo import phantom as demo

    centres = []
    for scanner in ("siteA", "siteC"):
        grid = demo_layouts.shrunk_grid(scanner, 2)
        images, label = demo._simulate("x", "sub002", scanner, 1, 0, BRATS_MODALITIES, grid)
        pairs = list(demo_layouts.lgg_slices(images, label, grid, 1, (160, 160)))
        rows_cols = np.argwhere(np.stack([m for _, m in pairs]) > 0)[:, 1:]
        centres.append((rows_cols.mean(axis=0) - 79.5) * grid["spacing"][0])
    assert np.linalg.norm(centres[0]) > 10  # off-centre: a flip would show
    assert np.allclose(centres[0], centres[1], atol=3), centres


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("layout", ["brats2021", "decathlon", "lgg", "nrrd"])
def test_exports_are_deterministic(exported, tmp_path, layout):
    root, _ = exported
    demo_layouts.export(layout, tmp_path / layout, **ARGS)
    assert _digest(tmp_path / layout) == _digest(root / layout)


def test_minc_export_is_deterministic_in_content(exported, tmp_path):
    root, tables = exported
    demo_layouts.export("minc", tmp_path / "minc", **ARGS)
    for case in tables["minc"]["case"]:
        for path in (root / "minc" / case).iterdir():
            again = tmp_path / "minc" / case / path.name
            a, b = sitk.ReadImage(str(path)), sitk.ReadImage(str(again))
            assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
            assert a.GetDirection() == b.GetDirection() and a.GetOrigin() == b.GetOrigin()


def test_export_errors(tmp_path):
    with pytest.raises(InputError, match="unknown layout 'brats1999'"):
        demo_layouts.export("brats1999", tmp_path / "a")
    with pytest.raises(InputError, match="shrink must be a whole number"):
        demo_layouts.export("lgg", tmp_path / "b", shrink=0)
    (tmp_path / "full" / "x").mkdir(parents=True)
    with pytest.raises(InputError, match="not empty"):
        demo_layouts.export("lgg", tmp_path / "full")


def test_cli(tmp_path):
    out = tmp_path / "data"
    res = subprocess.run(
        [sys.executable, "-m", "tumorseg.demo.layouts", "lgg", str(out), "--subjects", "2"]
        + ["--shrink", "4", "--slice-step", "2", "--seed", "3"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert res.returncode == 0, res.stderr
    assert f"next: tumorseg-sheet {out} -o samples.tsv" in res.stdout
    assert "label_convention: binary" in res.stdout and "wrote 2 cases" in res.stdout
    assert demo_layouts.main(["nrrd", str(out)]) == 1  # not empty
