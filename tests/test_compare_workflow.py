"""The 2D U-Net, the CNN baseline and the 3D U-Net trained side by side on the tiny demo:
each predicts every case onto its own native grid and the comparison lists all three."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from workflow_helpers import make_workdir, run_snakemake

pytestmark = pytest.mark.slow
MODELS = {"unet", "cnn", "unet3d"}


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("compare") / "wf")
    run_snakemake(wd, "--configfile", "tests/config/tiny.yaml", "tests/config/tiny_compare.yaml")
    return wd


def test_three_models_side_by_side(compare_run):
    wd = compare_run
    comparison = pd.read_csv(wd / "results/metrics/comparison.tsv", sep="\t")
    assert set(comparison["model"]) == {*MODELS, "unet_unet3d"}
    assert comparison.groupby("model").size().eq(3).all()  # WT, TC, ET each
    assert comparison["selected"].sum() == 3  # one run selected, on its three rows
    summary = pd.read_csv(wd / "results/metrics/summary.tsv", sep="\t")
    assert set(summary["model"]) == {*MODELS, "unet_unet3d"}
    model = wd / "results/models/unet3d/summary.txt"
    assert "unet3d" in model.read_text() and "8x96x96x4" in model.read_text()


def test_the_ensemble_of_architectures_is_kept_only_if_it_beats_both(compare_run):
    """`ensembles`: the 2D and the 3D U-Net averaged (each with its own sliding window or
    slices) in one job; kept only where its validation score beats both members'."""
    c = pd.read_csv(compare_run / "results/metrics/comparison.tsv", sep="\t")
    c = c.drop_duplicates("model").set_index("model")
    assert c.loc["unet_unet3d", "members"] == "unet,unet3d"
    scores = c["val_score"]
    beats = scores["unet_unet3d"] > max(scores["unet"], scores["unet3d"])
    assert bool(c.loc["unet_unet3d", "kept"]) == beats
    assert c.loc[["unet", "cnn", "unet3d"], "kept"].all()
    if not beats:
        assert not c.loc["unet_unet3d", "selected"]
    log = (compare_run / "logs/predict/unet_unet3d/batch0.log").read_text()
    assert "results/models/unet/model.keras, results/models/unet3d/model.keras" in log


def test_3d_predictions_land_on_the_native_grid(compare_run):
    wd = compare_run
    sheet = pd.read_csv(wd / "results/samples.tsv", sep="\t")
    for case in sheet["case"]:
        ref = nib.load(wd / f"resources/demo/{case}/{case}_flair.nii.gz")
        for run in ("unet3d", "unet_unet3d"):
            pred = nib.load(wd / f"results/predictions/{run}/{case}_seg.nii.gz")
            assert pred.shape == ref.shape
            np.testing.assert_allclose(pred.affine, ref.affine, atol=1e-5)
            assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 4}
    log = (wd / "logs/train/unet3d.log").read_text()
    assert "memory estimate" in log and "3D training" in log
    per_case = pd.read_csv(wd / "results/metrics/unet3d/per_case.tsv", sep="\t")
    assert per_case["dice"].between(0, 1).all()
