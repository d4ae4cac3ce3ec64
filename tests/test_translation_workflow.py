"""Image translation end to end on the tiny demo: T1 -> T2 synthesised on every patient's
own grid, scored against the baseline and the ceiling; reruns follow the target."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from figure_checks import written
from workflow_helpers import make_workdir, planned_jobs, run_snakemake, write_config

pytestmark = pytest.mark.slow
CONFIGS = ("--configfile", "tests/config/tiny.yaml", "tests/config/tiny_translation.yaml")


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("translation") / "wf")
    run_snakemake(wd, *CONFIGS)
    return wd


def test_synthetic_t2_lies_on_each_native_grid(translation_run):
    wd = translation_run
    sheet = pd.read_csv(wd / "results/samples.tsv", sep="\t")
    for case in sheet["case"]:
        t1 = nib.load(wd / f"resources/demo/{case}/{case}_t1.nii.gz")
        synthetic = nib.load(wd / f"results/predictions/unet/{case}_t2.nii.gz")
        assert synthetic.shape == t1.shape
        np.testing.assert_allclose(synthetic.affine, t1.affine, atol=1e-5)
        assert nib.aff2axcodes(synthetic.affine) == nib.aff2axcodes(t1.affine)
        assert synthetic.get_data_dtype() == np.float32
        values = np.asarray(synthetic.dataobj)
        raw = np.asarray(t1.dataobj)
        assert not values[raw == 0].any()  # 0 outside the brain (demo background is 0)
        assert np.isfinite(values).all() and values.std() > 0
    target = np.load(wd / f"results/preprocessed/{case}/target.npy", allow_pickle=False)
    assert target.shape == (77, 96, 96) and target.dtype == np.float16
    # the bundle: the task, its inputs and target, and the card's validation MAE
    bundle = json.loads((wd / "results/models/unet/bundle.json").read_text())
    assert bundle["config"]["task"] == "translation"
    assert bundle["config"]["translation"] == {"inputs": ["t1"], "target": "t2"}
    per_case = pd.read_csv(wd / "results/metrics/unet/per_case.tsv", sep="\t")
    val_mae = per_case.loc[per_case["split"] == "val", "mae"].mean()
    assert bundle["card"]["metrics"]["val"]["image"]["mae"]["mean"] == pytest.approx(val_mae)


def test_translation_metrics_against_baseline_and_ceiling(translation_run):
    wd = translation_run
    per_case = pd.read_csv(wd / "results/metrics/unet/per_case.tsv", sep="\t")
    assert list(per_case.columns[:12]) == [
        "case", "subject", "scanner", "split", "mae", "mse", "psnr", "ssim",
        "baseline_mae", "baseline_ssim", "ceiling_mae", "ceiling_ssim",
    ]  # fmt: skip
    sheet = pd.read_csv(wd / "results/samples.tsv", sep="\t")
    assert set(per_case["case"]) == set(sheet.loc[sheet["labelled"], "case"])
    # the ceiling is near the truth; the baseline (T1 taken for T2) is far from it
    assert (per_case["ceiling_mae"] < 0.5 * per_case["baseline_mae"]).all()
    assert (per_case["ceiling_ssim"] > per_case["baseline_ssim"]).all()
    val = per_case[per_case["split"] == "val"]
    assert len(val) and val["mae"].mean() < val["baseline_mae"].mean()  # it learnt something
    # the written files are what was scored: a real prediction, not the ceiling
    case = per_case.iloc[0]
    pred = sitk.GetArrayFromImage(sitk.ReadImage(
        str(wd / f"results/predictions/unet/{case['case']}_t2.nii.gz")
    ))  # fmt: skip
    ceiling = sitk.GetArrayFromImage(
        sitk.ReadImage(str(wd / f"results/ceiling/{case['case']}_t2.nii.gz"))
    )
    brain = ceiling != 0  # the ceiling is 0 exactly outside the brain
    assert np.abs(pred[brain] - ceiling[brain]).mean() > 0  # a real prediction
    comparison = pd.read_csv(wd / "results/metrics/comparison.tsv", sep="\t")
    assert comparison["selected"].tolist() == [True]
    history = pd.read_csv(wd / "results/models/unet/history.csv")
    assert {"val_mae", "val_ssim", "val_loss"} <= set(history)
    for png in ("boxplots.png", "overlays.png"):
        assert written(wd / "results/metrics/unet" / png)
    assert (wd / "results/models/unet/target_scale.json").is_file()
    # the model names no loss (tiny_translation.yaml): the task's defaults trained it
    summary = (wd / "results/models/unet/summary.txt").read_text()
    assert '"loss": "mae"' in summary and '"lesion_sampling": false' in summary


def test_reruns_follow_the_translation_target(translation_run):
    wd = translation_run
    assert planned_jobs(wd, *CONFIGS) == {}
    other = write_config(wd, "target_flair.yaml", {"translation": {"target": "flair"}})
    jobs = planned_jobs(wd, *CONFIGS, other)
    for rule in ("preprocess", "train", "predict", "evaluate", "summarise"):
        assert jobs.get(rule, 0) > 0, jobs
