"""nnU-Net's accuracy toolkit end to end on the tiny demo (tests/config/tiny_cv.yaml): a
region-based 2D U-Net (one sigmoid per BraTS region), two cross-validation folds, their
ensemble (out of fold on the folds' cases), mirrored at test time, uncertainty maps, and
post-processing chosen on validation and applied as runs of their own; every output on its
input's native grid. (`predict.tta: both`, the mirrored twin runs: tests/test_startup.py.)"""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from workflow_helpers import make_workdir, planned_jobs, run_snakemake

pytestmark = pytest.mark.slow
CONFIGS = ("--configfile", "tests/config/tiny.yaml", "tests/config/tiny_cv.yaml")
RAW = ["unet.fold0", "unet.fold1", "unet.ensemble"]
RUNS = [*RAW, *(f"{r}.pp" for r in RAW)]


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("cv") / "wf")
    run_snakemake(wd, *CONFIGS)
    return wd


def _labels(path):
    return np.asarray(nib.load(path).dataobj)


def _splits(wd):
    return pd.read_csv(wd / "results/splits/splits.tsv", sep="\t")


def test_the_comparison_lists_folds_ensemble_mirrored_and_postprocessed(cv_run):
    c = pd.read_csv(cv_run / "results/metrics/comparison.tsv", sep="\t")
    assert sorted(c["model"].unique()) == sorted(RUNS)
    assert c.groupby("model").size().eq(3).all()
    by_run = c.drop_duplicates("model").set_index("model")
    assert not by_run.loc[["unet.fold0", "unet.fold1", "unet.fold0.pp"], "selected"].any()
    assert by_run["selected"].sum() == 1
    # a fold run validates on its own fold, the ensemble on every fold's cases
    folds = _splits(cv_run)["fold"]
    n_fold = {k: int((folds == k).sum()) for k in (0, 1)}
    sheet = pd.read_csv(cv_run / "results/samples.tsv", sep="\t")
    labelled = set(sheet.loc[sheet["labelled"], "case"])
    in_folds = set(_splits(cv_run).query("fold >= 0")["case"]) & labelled
    assert by_run.loc["unet.ensemble", "n_val"] == len(in_folds)
    for k in (0, 1):
        fold_cases = set(_splits(cv_run).query(f"fold == {k}")["case"]) & labelled
        assert by_run.loc[f"unet.fold{k}", "n_val"] == len(fold_cases) <= n_fold[k]


def test_the_ensemble_predicts_each_fold_case_out_of_fold(cv_run):
    """A case of fold k is predicted by fold k's model alone (the one that did not train
    on it): the ensemble's segmentation is that model's, voxel for voxel. A test case is
    the average of both; every segmentation lies on the case's own grid."""
    splits = _splits(cv_run)
    for _, row in splits.iterrows():
        case, fold = row["case"], int(row["fold"])
        ens = cv_run / f"results/predictions/unet.ensemble/{case}_seg.nii.gz"
        if fold >= 0:
            own = cv_run / f"results/predictions/unet.fold{fold}/{case}_seg.nii.gz"
            assert np.array_equal(_labels(ens), _labels(own)), case
        ref = nib.load(cv_run / f"resources/demo/{case}/{case}_flair.nii.gz")
        for run in RUNS:
            pred = nib.load(cv_run / f"results/predictions/{run}/{case}_seg.nii.gz")
            assert pred.shape == ref.shape, (run, case)
            np.testing.assert_allclose(pred.affine, ref.affine, atol=1e-5)
            assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 4}
    log = (cv_run / "logs/predict/unet.ensemble/batch0.log").read_text()
    assert "test-time mirroring of results/models/unet.fold0/model.keras" in log
    assert "out of fold with" in log


def test_uncertainty_maps_where_predictions_are_averaged(cv_run):
    """Entropy maps where predictions are averaged (the ensemble; mirrored runs), float32 on
    the native grid."""
    case = _splits(cv_run).query("fold < 0")["case"].iloc[0]  # the average of both folds
    ref = nib.load(cv_run / f"resources/demo/{case}/{case}_flair.nii.gz")
    for run in ("unet.ensemble", "unet.fold0"):
        entropy = nib.load(cv_run / f"results/uncertainty/{run}/{case}_entropy.nii.gz")
        assert entropy.get_data_dtype() == np.float32 and entropy.shape == ref.shape
        np.testing.assert_allclose(entropy.affine, ref.affine, atol=1e-5)
        values = entropy.get_fdata()
        assert values.min() >= 0 and values.max() <= 3 * np.log(2) + 1e-5  # 3 regions
    assert not (cv_run / "results/uncertainty/unet.fold0.pp").exists()


def test_postprocessing_is_chosen_on_validation_and_scored_beside_the_raw(cv_run):
    """The choice never lowers a region's validation Dice, and its before/after figures are
    those the evaluation measures independently on the raw and post-processed runs."""
    c = pd.read_csv(cv_run / "results/metrics/comparison.tsv", sep="\t")
    for run in RAW:
        choice = json.loads((cv_run / f"results/postprocessing/{run}.json").read_text())
        assert choice["run"] == run and choice["n_cases"] > 0
        for region, raw in choice["raw"].items():
            assert choice["postprocessed"][region] >= raw
            measured = c[(c["model"] == run) & (c["region"] == region)]["val_dice"].item()
            after = c[(c["model"] == f"{run}.pp") & (c["region"] == region)]["val_dice"].item()
            assert measured == pytest.approx(raw, abs=1e-9)
            assert after == pytest.approx(choice["postprocessed"][region], abs=1e-9)
        if not choice["steps"]:  # nothing kept: the post-processed run is the raw one
            case = choice["cases"][0]
            raw_seg = cv_run / f"results/predictions/{run}/{case}_seg.nii.gz"
            pp_seg = cv_run / f"results/predictions/{run}.pp/{case}_seg.nii.gz"
            assert np.array_equal(_labels(raw_seg), _labels(pp_seg))


def test_the_model_learns_the_regions(cv_run):
    """output: regions: three sigmoid outputs (WT, TC, ET) and the
    validation Dice of each region in the training history."""
    summary = (cv_run / "results/models/unet.fold0/summary.txt").read_text()
    line = next(s for s in summary.splitlines() if "probabilities" in s)
    assert "(None, 96, 96, 3)" in line
    history = pd.read_csv(cv_run / "results/models/unet.fold0/history.csv")
    assert {"val_dice_wt", "val_dice_tc", "val_dice_et"} <= set(history.columns)


def test_a_second_run_finds_nothing_to_do(cv_run):
    assert planned_jobs(cv_run, *CONFIGS) == {}
