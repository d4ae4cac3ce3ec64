"""The workflow run for real: the tiny demo config end to end, and the two real cases
predicted with the trained model through the `pretrained` switch."""

import json
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from workflow_helpers import ROOT, make_workdir, run_snakemake

pytestmark = pytest.mark.slow


def test_tiny_run_writes_every_output(tiny_run):
    wd = tiny_run
    sheet = pd.read_csv(wd / "results/samples.tsv", sep="\t", dtype={"labelled": bool})
    assert len(sheet) == 9 and sheet["scanner"].nunique() == 3
    splits = pd.read_csv(wd / "results/splits/splits.tsv", sep="\t")
    assert set(splits["split"]) == {"train", "val", "test", "predict"}
    assert set(splits.loc[~splits["case"].isin(sheet.loc[sheet.labelled, "case"]), "split"]) == {
        "predict"
    }
    for case in sheet["case"]:
        pre = wd / "results/preprocessed" / case
        image = np.load(pre / "image.npy", mmap_mode="r", allow_pickle=False)
        assert image.shape == (77, 96, 96, 4) and image.dtype == np.float16
        assert (pre / "qc.png").stat().st_size > 10_000
        record = json.loads((pre / "geometry.json").read_text())
        assert record["resampled"] == case.startswith("siteC")  # siteC: 1.2 mm RAS

        # the prediction overlays the native scan: same shape, affine and orientation
        flair = wd / f"resources/demo/{case}/{case}_flair.nii.gz"
        pred = nib.load(wd / f"results/predictions/unet/{case}_seg.nii.gz")
        ref = nib.load(flair)
        assert pred.shape == ref.shape
        np.testing.assert_allclose(pred.affine, ref.affine, atol=1e-5)
        assert nib.aff2axcodes(pred.affine) == nib.aff2axcodes(ref.affine)
        assert pred.get_data_dtype() == np.uint8
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 4}

    per_case = pd.read_csv(wd / "results/metrics/unet/per_case.tsv", sep="\t")
    assert list(per_case.columns[:12]) == [
        "case",
        "subject",
        "scanner",
        "split",
        "region",
        "dice",
        "sensitivity",
        "specificity",
        "hd95",
        "volume_pred",
        "volume_ref",
        "ceiling_dice",
    ]
    labelled = set(sheet.loc[sheet.labelled, "case"])
    assert set(per_case["case"]) == labelled and len(per_case) == 3 * len(labelled)
    wt = per_case[per_case.region == "WT"]
    assert (wt["ceiling_dice"] > 0.9).all(), wt[["case", "ceiling_dice"]]
    assert per_case["dice"].between(0, 1).all() and (per_case["hd95"] >= 0).all()
    # volumes are in mm^3 on the native grid: siteC voxels are 1.2^3 mm^3
    c = sorted(x for x in labelled if x.startswith("siteC"))[0]
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(wd / f"resources/demo/{c}/{c}_seg.nii.gz")))
    vol = per_case[(per_case.case == c) & (per_case.region == "WT")]["volume_ref"].item()
    assert vol == pytest.approx((seg > 0).sum() * 1.2**3, rel=1e-6)

    summary = pd.read_csv(wd / "results/metrics/summary.tsv", sep="\t")
    assert {"model", "split", "scanner", "region", "metric", "mean", "median"} <= set(summary)
    comparison = pd.read_csv(wd / "results/metrics/comparison.tsv", sep="\t")
    assert comparison["selected"].any()
    for name in ("boxplots.png", "overlays.png"):
        assert (wd / "results/metrics/unet" / name).stat().st_size > 10_000
    for name in ("model.keras", "history.csv", "curves.png", "summary.txt"):
        assert (wd / "results/models/unet" / name).stat().st_size > 0


def test_report_collects_the_pictures(tiny_run, tmp_path):
    report = tmp_path / "report.zip"
    run_snakemake(tiny_run, "--configfile", "tests/config/tiny.yaml", "--report", str(report))
    import zipfile

    names = zipfile.ZipFile(report).namelist()
    for needed in ("qc.png", "splits.png", "curves.png", "boxplots.png", "overlays.png"):
        assert any(n.endswith(needed) for n in names), needed


def test_real_cases_with_the_trained_model(tiny_run, tmp_path, real_data):
    """Sheet written by the CLI from the real BraTS folder; the tiny run's model applied
    without retraining; everything scored (split ratios test: 1)."""
    wd = make_workdir(tmp_path / "wf")
    sheet = wd / "config/real.tsv"
    subprocess.run(
        [sys.executable, "-m", "tumorseg.sheet", str(real_data), "-o", str(sheet)],
        check=True,
        env={"PYTHONPATH": str(wd / "src")},
    )
    model = tmp_path / "unet.keras"
    shutil.copy(tiny_run / "results/models/unet/model.keras", model)
    (wd / "config/real.yaml").write_text(
        yaml.safe_dump(
            {
                "demo": {"enabled": False},
                "samples": "config/real.tsv",
                "pretrained": {"unet": str(model)},
                "split": {"ratios": {"train": 0.0, "val": 0.0, "test": 1.0}},
            }
        )
    )
    run_snakemake(wd, "--configfile", "tests/config/tiny.yaml", "config/real.yaml")
    assert not (wd / "results/models").exists(), "a pretrained model must not be retrained"

    per_case = pd.read_csv(wd / "results/metrics/unet/per_case.tsv", sep="\t")
    assert set(per_case["split"]) == {"test"} and len(per_case) == 6
    for case in ("TCGA-DU-7294", "TCGA-FG-6692"):
        src = real_data / case / f"{case}_seg.nii.gz"
        for out in (
            f"results/predictions/unet/{case}_seg.nii.gz",
            f"results/ceiling/{case}_seg.nii.gz",
        ):
            got = nib.load(wd / out)
            np.testing.assert_array_equal(got.affine, nib.load(src).affine)
            assert got.shape == (240, 240, 155)
    # TCGA-DU-7294 has no enhancing tumour: the BraTS empty-region convention applies
    et = per_case[(per_case.case == "TCGA-DU-7294") & (per_case.region == "ET")].iloc[0]
    assert et["volume_ref"] == 0
    pred = np.asarray(nib.load(wd / "results/predictions/unet/TCGA-DU-7294_seg.nii.gz").dataobj)
    if (pred == 4).any():
        assert et["dice"] == 0 and et["hd95"] == pytest.approx(373.13)
    else:
        assert et["dice"] == 1 and et["hd95"] == 0
    assert et["ceiling_dice"] == 1  # the reference's own empty ET stays empty
    fg = per_case[(per_case.case == "TCGA-FG-6692") & (per_case.region == "WT")].iloc[0]
    assert fg["ceiling_dice"] > 0.93


def test_brats_metrics_unchanged_by_label_maps(tiny_run):
    """The BraTS preset gives exactly the metrics the workflow gave before label maps were
    configurable (pinned from the tiny run of that version, on this kind of machine; pinned
    again when training moved to the fused batch normalisation, whose rounding differs)."""
    pinned = pd.read_csv(ROOT / "tests/data/tiny_per_case_brats2017.tsv", sep="\t")
    got = pd.read_csv(tiny_run / "results/metrics/unet/per_case.tsv", sep="\t")
    pd.testing.assert_frame_equal(got, pinned, check_exact=False, rtol=1e-9, atol=1e-12)
