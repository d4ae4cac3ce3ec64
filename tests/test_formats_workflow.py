"""The workflow end to end on the datasets users bring, each from `tumorseg-sheet`: an LGG
slice collection (binary masks, TIFF in and out), a tissue parcellation with 22
non-contiguous labels stored as MINC (non-axial voxel order), MHA and NRRD, and BraTS 2023
and Decathlon folders predicted with a trained model."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from figure_checks import written
from formats_data import TISSUE_LABELS, TISSUE_VALUES, export, tissue_dataset, write_sheet
from workflow_helpers import make_workdir, run_command, run_snakemake

from tumorseg.io.grid import Grid
from tumorseg.io.slices import find_stack

pytestmark = pytest.mark.slow


def _config(wd, name, data) -> str:
    (wd / "config" / name).write_text(yaml.safe_dump(data, sort_keys=False))
    return f"config/{name}"


@pytest.fixture(scope="module")
def lgg_run(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("lgg") / "wf")
    export("lgg", wd / "data/lgg", "--subjects", "6", "--slice-step", "3")
    said = write_sheet(wd / "data/lgg", wd / "config/lgg.tsv")
    assert "label_convention: binary" in said
    # the sheet and `label_convention: binary` are all it takes (tiny.yaml: a tiny model)
    cfg = {"demo": {"enabled": False}, "samples": "config/lgg.tsv", "label_convention": "binary"}
    run_snakemake(wd, "--configfile", "tests/config/tiny.yaml", _config(wd, "lgg.yaml", cfg))
    return wd


def test_lgg_predictions_are_tiff_masks_like_the_input(lgg_run):
    wd = lgg_run
    sheet = pd.read_csv(wd / "config/lgg.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert set(sheet["scanner"]) == {"CS", "DU", "HT"}  # the TCGA tissue-source sites
    for _, row in sheet.iterrows():
        stack = find_stack((wd / "config" / row["image"]).resolve())
        pred = wd / "results/predictions/unet" / row["case"]
        names = sorted(p.name for p in pred.iterdir() if not p.name.startswith("."))
        assert names == sorted(f"{stack.stem}_{k}_mask.tif" for k in stack.numbers)
        for k, src in zip(stack.numbers, stack.images, strict=True):
            mask = sitk.ReadImage(str(pred / f"{stack.stem}_{k}_mask.tif"))
            assert mask.GetSize() == sitk.ReadImage(str(src)).GetSize()[:2]
            assert mask.GetNumberOfComponentsPerPixel() == 1
            assert set(np.unique(sitk.GetArrayFromImage(mask))) <= {0, 255}
        image = np.load(wd / "results/preprocessed" / row["case"] / "image.npy")
        assert image.shape == (len(stack.numbers), 128, 128, 3)  # 256 / 2, every slice


def test_lgg_metrics_per_patient_and_per_slice(lgg_run):
    wd = lgg_run
    per_case = pd.read_csv(wd / "results/metrics/unet/per_case.tsv", sep="\t")
    assert set(per_case["region"]) == {"lesion"}
    assert {"dice", "sensitivity", "specificity", "slice_dice", "ceiling_dice"} <= set(per_case)
    assert per_case["slice_dice"].between(0, 1).all()
    assert (per_case["ceiling_dice"] > 0.9).all(), per_case[["case", "ceiling_dice"]]
    splits = pd.read_csv(wd / "results/splits/splits.tsv", sep="\t")
    assert set(splits.loc[splits["split"] == "train", "scanner"]) == {"CS", "DU", "HT"}
    history = pd.read_csv(wd / "results/models/unet/history.csv")
    assert {"val_dice_lesion", "val_dice_mean"} <= set(history)
    comparison = pd.read_csv(wd / "results/metrics/comparison.tsv", sep="\t")
    assert list(comparison["region"]) == ["lesion"]
    for png in ("boxplots.png", "overlays.png"):
        assert written(wd / "results/metrics/unet" / png)


@pytest.fixture(scope="module")
def tissue_run(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("tissue") / "wf")
    sheet = tissue_dataset(wd / "data")
    cfg = {
        "demo": {"enabled": False},
        "samples": str(sheet.relative_to(wd)),
        "modalities": ["t1"],
        "label_convention": "custom",
        "labels": TISSUE_LABELS,
        "preprocess": {
            "canonical": {"size": [120, 120, 80], "spacing": [2.0, 2.0, 2.0]},
            "crop": {"size": [96, 96]},
        },
    }
    run_snakemake(wd, "--configfile", "tests/config/tiny.yaml", _config(wd, "tissue.yaml", cfg))
    return wd


def test_tissue_labels_from_minc_mha_nrrd_land_on_each_input_grid(tissue_run):
    wd = tissue_run
    sheet = pd.read_csv(wd / "data/tissue.tsv", sep="\t", dtype=str)
    minc_dirs = set()
    for _, row in sheet.iterrows():
        t1 = wd / "data" / row["t1"]
        grid = Grid.from_file(t1)
        if t1.suffix == ".mnc":
            minc_dirs.add(grid.orientation)
        pred = nib.load(wd / f"results/predictions/unet/{row['case']}_seg.nii.gz")
        assert pred.shape == grid.size
        np.testing.assert_allclose(pred.affine, grid.affine_ras(), atol=1e-4)
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, *TISSUE_VALUES}
        ceiling = sitk.ReadImage(str(wd / f"results/ceiling/{row['case']}_seg.nii.gz"))
        assert Grid.from_image(ceiling).same_as(grid)
    assert minc_dirs and "LPS" not in minc_dirs  # MINC stored in a non-axial voxel order


def test_tissue_metrics_follow_the_map_and_agree_across_formats(tissue_run):
    per_case = pd.read_csv(tissue_run / "results/metrics/unet/per_case.tsv", sep="\t")
    assert list(per_case["region"].drop_duplicates()) == list(TISSUE_LABELS)  # map order
    assert per_case.groupby("case").size().eq(len(TISSUE_VALUES)).all()
    assert per_case["ceiling_dice"].mean() > 0.85
    # the same scans stored as MINC, MHA and NRRD score the same, to the last digit
    per_case["anatomy"] = per_case["case"].str.split("_", n=1).str[1]
    cols = ["dice", "hd95_directed", "hd95_pooled", "volume_ref", "ceiling_dice"]
    for _, group in per_case.groupby(["anatomy", "region"]):
        assert len(group) == 3
        np.testing.assert_allclose(group[cols].to_numpy(), group[cols].iloc[[0] * 3], rtol=1e-9)
    history = pd.read_csv(tissue_run / "results/models/unet/history.csv")
    assert {f"val_dice_{name}" for name in TISSUE_LABELS} <= set(history)
    model = tissue_run / "results/models/unet/summary.txt"
    assert "tissue51" in model.read_text()


def test_lgg_folder_predicted_by_one_command(lgg_run, tmp_path):
    """The LGG run's bundle applied by `tumorseg-predict` to the slice folder: the masks are
    the workflow's own, folder by folder, in the input's naming."""
    out = tmp_path / "out"
    run_command(
        "tumorseg-predict", "-i", str(lgg_run / "data/lgg"), "-o", str(out),
        "-m", str(lgg_run / "results/models/unet"), "--cores", "2",
    )  # fmt: skip
    sheet = pd.read_csv(lgg_run / "config/lgg.tsv", sep="\t", dtype=str, keep_default_na=False)
    for case in sheet["case"]:
        want = lgg_run / "results/predictions/unet" / case
        names = sorted(p.name for p in want.iterdir() if not p.name.startswith("."))
        assert sorted(p.name for p in (out / case).iterdir()) == names
        for name in names:
            got = sitk.GetArrayFromImage(sitk.ReadImage(str(out / case / name)))
            np.testing.assert_array_equal(
                got, sitk.GetArrayFromImage(sitk.ReadImage(str(want / name)))
            )
    scored = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert set(scored["region"]) == {"lesion"} and set(scored["case"]) <= set(sheet["case"])


@pytest.mark.parametrize(
    ("layout", "written", "naming"),
    [("brats2023", {0, 1, 2, 3}, "{}-seg.nii.gz"), ("decathlon", {0, 1, 2, 3}, "{}.nii.gz")],
)
def test_brats2023_and_decathlon_folders_predicted_by_one_command(
    tiny_run, tmp_path, layout, written, naming
):
    """The tiny run's bundle (trained on BraTS 2017 labels 0/1/2/4, one file per modality)
    applied by `tumorseg-predict` to a BraTS 2023 folder and to a Decathlon folder of 4D
    files: segmentations on each input's grid, in the folder's own label values and naming,
    and the cases with a reference scored."""
    data = tmp_path / "data"
    export(layout, data, "--subjects", "2", "--shrink", "2", "--unlabelled", "1")
    out = tmp_path / "out"
    run_command(
        "tumorseg-predict", "-i", str(data), "-o", str(out),
        "-m", str(tiny_run / "results/models/unet"), "--cores", "2",
    )  # fmt: skip
    write_sheet(data, tmp_path / "samples.tsv")
    sheet = pd.read_csv(tmp_path / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    image_col = "image" if layout == "decathlon" else "t1ce"
    for _, row in sheet.iterrows():
        ref = nib.load(tmp_path / row[image_col])
        pred = nib.load(out / naming.format(row["case"]))
        assert pred.shape == ref.shape[:3]
        np.testing.assert_allclose(pred.affine, ref.affine, atol=1e-4)
        assert set(np.unique(np.asarray(pred.dataobj))) <= written
    per_case = pd.read_csv(out / "metrics.tsv", sep="\t")
    labelled = sheet.loc[sheet["seg"] != "", "case"]
    assert set(per_case["case"]) == set(labelled) and len(per_case) == 3 * len(labelled)
    assert (per_case.loc[per_case["region"] == "WT", "ceiling_dice"] > 0.9).all()
