"""The workflow run for real: the tiny demo config end to end, and the two real cases
predicted with the trained model through the `pretrained` switch."""

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from brats_reference import official
from figure_checks import written
from workflow_helpers import make_workdir, run_command, run_snakemake

from tumorseg.evaluation.lesions import LESION_COLUMNS, lesion_table
from tumorseg.tasks.labels import as_label_map

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
        assert written(pre / "qc.png")
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
    assert list(per_case.columns[:13]) == [
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
    labelled = set(sheet.loc[sheet.labelled, "case"])
    assert set(per_case["case"]) == labelled and len(per_case) == 3 * len(labelled)
    wt = per_case[per_case.region == "WT"]
    assert (wt["ceiling_dice"] > 0.9).all(), wt[["case", "ceiling_dice"]]
    assert per_case["dice"].between(0, 1).all()
    assert (per_case[["hd95_directed", "hd95_pooled"]] >= 0).all().all()
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
    """Sheet written by the CLI from the real BraTS folder; the tiny run's bundle archive
    applied without retraining (unpacked into resources/bundles), with test-time mirroring
    and the uncertainty maps; everything scored (split ratios test: 1)."""
    wd = make_workdir(tmp_path / "wf")
    sheet = wd / "config/real.tsv"
    subprocess.run(
        [sys.executable, "-m", "tumorseg.io.sheet", str(real_data), "-o", str(sheet)],
        check=True,
        env={"PYTHONPATH": str(wd / "src")},
    )
    model = tmp_path / "unet.zip"  # the bundle's archive, as a colleague would send it
    run_command("tumorseg-export", str(tiny_run / "results/models/unet"), "-o", str(model))
    (wd / "config/real.yaml").write_text(
        yaml.safe_dump(
            {
                "demo": {"enabled": False},
                "samples": "config/real.tsv",
                "pretrained": {"unet": str(model)},
                "split": {"ratios": {"train": 0.0, "val": 0.0, "test": 1.0}},
                "predict": {"tta": "mirror", "uncertainty": True},
            }
        )
    )
    run_snakemake(wd, "--configfile", "tests/config/tiny.yaml", "config/real.yaml")
    assert not (wd / "results/models").exists(), "a pretrained model must not be retrained"
    assert len(list((wd / "resources/bundles").glob("unet-*/unet/model.keras"))) == 1
    logs = [f.read_text() for f in (wd / "logs/predict/unet").glob("batch*.log")]
    assert logs and all("test-time mirroring along batch axes (-2,)" in t for t in logs)

    per_case = pd.read_csv(wd / "results/metrics/unet/per_case.tsv", sep="\t")
    assert set(per_case["split"]) == {"test"} and len(per_case) == 6
    for case in ("TCGA-DU-7294", "TCGA-FG-6692"):
        src = real_data / case / f"{case}_seg.nii.gz"
        for out in (
            f"results/predictions/unet/{case}_seg.nii.gz",
            f"results/ceiling/{case}_seg.nii.gz",
            f"results/uncertainty/unet/{case}_entropy.nii.gz",
        ):
            got = nib.load(wd / out)
            np.testing.assert_array_equal(got.affine, nib.load(src).affine)
            assert got.shape == (240, 240, 155)
        entropy = nib.load(wd / f"results/uncertainty/unet/{case}_entropy.nii.gz")
        assert entropy.get_data_dtype() == np.float32
        values = np.asarray(entropy.dataobj)
        assert 0 <= values.min() and values.max() <= np.log(4) + 1e-5 and values.max() > 0
    # TCGA-DU-7294 has no enhancing tumour: the BraTS empty-region convention applies
    et = per_case[(per_case.case == "TCGA-DU-7294") & (per_case.region == "ET")].iloc[0]
    assert et["volume_ref"] == 0
    pred = np.asarray(nib.load(wd / "results/predictions/unet/TCGA-DU-7294_seg.nii.gz").dataobj)
    if (pred == 4).any():
        assert et["dice"] == 0 and et["hd95_pooled"] == pytest.approx(373.13)
        assert et["lesion_dice"] == 0 and et["lesion_hd95"] == 373
    else:
        assert et["dice"] == 1 and et["hd95_pooled"] == et["hd95_directed"] == 0
        assert np.isnan(et["lesion_dice"]) and et["lesion_tp"] == 0
    assert et["ceiling_dice"] == 1  # the reference's own empty ET stays empty
    fg = per_case[(per_case.case == "TCGA-FG-6692") & (per_case.region == "WT")].iloc[0]
    assert fg["ceiling_dice"] > 0.93


_BRATS2017 = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}  # the regions before label maps


def _old_brats_metrics(pred: np.ndarray, ref: np.ndarray, zooms) -> dict:
    """Metrics of one case, written out with the fixed BraTS 2017 regions on the raw file
    values, counted over the whole grid (no label map, no bounding box), as the workflow
    gave them before label maps were configurable; HD95 is the package's own (checked
    against brute force in test_metrics)."""
    from skimage.measure import label

    from tumorseg.evaluation.segmentation import hd95_directed, hd95_pooled

    rows = {}
    for region, values in _BRATS2017.items():
        p, r = np.isin(pred, values), np.isin(ref, values)
        tp, fp, fn = (p & r).sum(), (p & ~r).sum(), (~p & r).sum()
        tn = p.size - tp - fp - fn
        rows[region] = {
            "dice": 1.0 if p.sum() + r.sum() == 0 else 2 * tp / (p.sum() + r.sum()),
            "sensitivity": (1.0 if not p.any() else 0.0) if not r.any() else tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "hd95_directed": hd95_directed(p, r, zooms),
            "hd95_pooled": hd95_pooled(p, r, zooms),
            "volume_pred": p.sum() * float(np.prod(zooms)),
            "volume_ref": r.sum() * float(np.prod(zooms)),
            "lesions_pred": label(p, connectivity=3, return_num=True)[1],
            "lesions_ref": label(r, connectivity=3, return_num=True)[1],
        }
    return rows


def test_brats_metrics_unchanged_by_label_maps(tiny_run, tmp_path):
    """The BraTS preset scores the written predictions (and the ceiling) exactly as the fixed
    BraTS regions did before label maps were configurable. Recomputed from the NIfTI files
    rather than pinned: the tiny model's predictions depend on the host's floating point
    (CPU kernels, bfloat16 where the CPU has it), the definitions must not. The tolerance
    covers the voxel size only: nibabel's header zooms against SimpleITK's spacing from the
    affine (1.2 mm differs in the eighth digit); a changed region or convention differs in
    whole voxels."""
    wd = tiny_run
    got = pd.read_csv(wd / "results/metrics/unet/per_case.tsv", sep="\t")
    assert len(got) == 24  # 8 labelled demo cases x 3 regions
    official_files = {}
    # one case per scanner (siteC: the 1.2 mm RAS grid): the HD95s of the tiny model's
    # scattered masks take a second each
    for case in got.groupby("scanner")["case"].min():
        rows = got[got["case"] == case]
        ref_nii = nib.load(wd / f"resources/demo/{case}/{case}_seg.nii.gz")
        ref, zooms = np.asarray(ref_nii.dataobj), ref_nii.header.get_zooms()[:3]
        pred = np.asarray(nib.load(wd / f"results/predictions/unet/{case}_seg.nii.gz").dataobj)
        ceiling = np.asarray(nib.load(wd / f"results/ceiling/{case}_seg.nii.gz").dataobj)
        expected = _old_brats_metrics(pred, ref, zooms)
        ceiling_expected = _old_brats_metrics(ceiling, ref, zooms)
        assert list(rows["region"]) == list(_BRATS2017)
        for row in rows.itertuples(index=False):
            want = expected[row.region]
            for column, value in want.items():
                assert getattr(row, column) == pytest.approx(value, rel=1e-6, abs=1e-12), (
                    case,
                    row.region,
                    column,
                )
            assert row.ceiling_dice == pytest.approx(ceiling_expected[row.region]["dice"])
            assert row.ceiling_hd95 == pytest.approx(ceiling_expected[row.region]["hd95_pooled"])
        # the lesion-wise columns (BraTS map, evaluation.lesion_wise: gli by default), from
        # the files on their own grid: array order and the spacing reversed into it
        classes = as_label_map("brats2017")
        pred_sitk = sitk.ReadImage(str(wd / f"results/predictions/unet/{case}_seg.nii.gz"))
        ref_sitk = sitk.ReadImage(str(wd / f"resources/demo/{case}/{case}_seg.nii.gz"))
        lesions = lesion_table(
            classes.to_internal(sitk.GetArrayFromImage(pred_sitk)),
            classes.to_internal(sitk.GetArrayFromImage(ref_sitk)),
            tuple(reversed(ref_sitk.GetSpacing())),
            classes,
            "gli",
        ).set_index("region")
        for row in rows.itertuples(index=False):
            for column in LESION_COLUMNS:
                want = lesions.loc[row.region, column]
                assert getattr(row, column) == pytest.approx(want, nan_ok=True), (case, column)
        # the same files, in BraTS 2023 values, for the official BraTS evaluation below
        for name, image in (("pred", pred_sitk), ("ref", ref_sitk)):
            values = classes.to_internal(sitk.GetArrayFromImage(image)).astype(np.uint8)
            out = sitk.GetImageFromArray(values)
            out.CopyInformation(image)
            sitk.WriteImage(out, str(tmp_path / f"{case}_{name}.nii.gz"))
        official_files[case] = tuple(str(tmp_path / f"{case}_{n}.nii.gz") for n in ("pred", "ref"))
    # the tiny model's scattered masks (thousands of lesions) against the official BraTS
    # evaluation, on the resampled siteC case (its lesion matching takes most of this test's
    # time; every demo grid is isotropic, where its spacing order does not matter)
    official_files = {c: f for c, f in official_files.items() if c.startswith("siteC")}
    theirs = official("gli", official_files, tmp_path)
    for case in official_files:
        for row in got[got["case"] == case].itertuples(index=False):
            their = theirs.loc[case]
            g = row.region.lower()
            assert row.lesion_tp == their[f"all_instance_tp_{g}"], (case, g)
            assert row.lesion_fp == their[f"all_instance_fp_{g}"], (case, g)
            assert row.lesion_dice == pytest.approx(their[f"lesionwise_dsc_mean_{g}"], nan_ok=True)
            their_hd = their[f"lesionwise_hd95_mean_{g}"]
            their_hd = 373.0 if np.isinf(their_hd) else their_hd
            assert row.lesion_hd95 == pytest.approx(their_hd, nan_ok=True), (case, g)
    summary = pd.read_csv(wd / "results/metrics/summary.tsv", sep="\t")
    assert {"lesion_dice", "lesion_hd95", "hd95_pooled", "hd95_directed"} <= set(summary["metric"])
    comparison = pd.read_csv(wd / "results/metrics/comparison.tsv", sep="\t")
    assert {"val_lesion_dice", "test_lesion_hd95", "val_hd95_directed"} <= set(comparison)
