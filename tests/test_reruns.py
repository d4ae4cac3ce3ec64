"""What Snakemake reruns after a config change (on the tiny config), and reproducibility.

The plans are dry runs against the session's completed tiny run (``tiny_run``), with the
change given as an extra ``--configfile`` (merged over tests/config/tiny.yaml), so the shared
workdir is never modified. Runs that must really happen use copies of it.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from workflow_helpers import (
    ROOT,
    assert_same_results,
    copy_workdir,
    make_workdir,
    planned_job_details,
    run_snakemake,
    write_config,
)

from tumorseg.batches import assign_batches, batch_of

pytestmark = pytest.mark.slow

TINY = "tests/config/tiny.yaml"
UPSTREAM = {"demo_case", "sample_sheet", "split"}


def plan(workdir: Path, *configfiles: str) -> list[tuple[str, dict[str, str]]]:
    return planned_job_details(workdir, "--configfile", TINY, *configfiles)


def counts(jobs) -> Counter:
    return Counter(rule for rule, _ in jobs)


BATCHES = 2  # predict.batches as tiny.yaml pins it


def cases(workdir: Path) -> tuple[list[str], list[str]]:
    """(all cases, labelled cases) of a run, from its preprocessed folders and metrics."""
    every = sorted(p.parent.name for p in (workdir / "results/preprocessed").glob("*/image.npy"))
    labelled = sorted(p.stem for p in (workdir / "results/metrics/unet/cases").glob("*.tsv"))
    assert len(every) > len(labelled) > 0
    return every, labelled


def n_batches(case_ids: list[str]) -> int:
    """The batch jobs a step runs for these cases (the non-empty batches)."""
    return len(assign_batches(case_ids, BATCHES))


def model_jobs(every: list[str], labelled: list[str]) -> Counter:
    """The jobs of one model after its weights change: every batch of its cases."""
    return Counter(
        train=1,
        predict=n_batches(every),
        evaluate=n_batches(labelled),
        aggregate=1,
        bundle=1,
        summarise=1,
        all=1,
    )


def test_nothing_changed_nothing_runs(tiny_run):
    assert plan(tiny_run) == []
    proc = run_snakemake(tiny_run, "-n", "--configfile", TINY)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_a_copied_workdir_is_still_complete(tiny_run, tmp_path):
    # The copies used below keep mtimes and metadata: nothing to do there either.
    assert plan(copy_workdir(tiny_run, tmp_path / "wf")) == []


@pytest.mark.parametrize(
    "setting",
    [{"epochs": 3}, {"learning_rate": 0.001}, {"augment": {"flip": False}}, {"seed": 2}],
    ids=["epochs", "learning_rate", "augment", "seed"],
)
def test_training_setting_reruns_that_model_and_downstream_only(tiny_run, setting):
    override = write_config(tiny_run, "rerun_training.yaml", {"models": {"unet": setting}})
    jobs = plan(tiny_run, override)
    assert counts(jobs) == model_jobs(*cases(tiny_run)), counts(jobs)
    assert {w.get("model") for r, w in jobs if r not in ("summarise", "all")} == {"unet"}


def test_runtime_settings_of_a_model_do_not_retrain(tiny_run):
    override = write_config(
        tiny_run, "rerun_runtime.yaml", {"models": {"unet": {"threads": 1, "runtime": 99}}}
    )
    assert plan(tiny_run, override) == []


@pytest.mark.parametrize(
    "change",
    [
        {"crop": {"size": [160, 160]}},
        {"crop": {"mode": "brain"}},
        {"downsample": [4, 4, 2]},
    ],
    ids=["crop_size", "crop_mode", "downsample"],
)
def test_preprocessing_change_reruns_preprocessing_and_everything_after(tiny_run, change):
    override = write_config(tiny_run, "rerun_preprocess.yaml", {"preprocess": change})
    jobs = plan(tiny_run, override)
    every, labelled = cases(tiny_run)
    expected = model_jobs(every, labelled) + Counter(
        preprocess=len(every),
        qc=n_batches(every),
        ceiling=n_batches(labelled),
        preprocess_summary=1,
    )
    assert counts(jobs) == expected, counts(jobs)
    assert not UPSTREAM & set(counts(jobs))


def test_split_change_reruns_split_and_every_model_not_preprocessing(tiny_run):
    override = write_config(tiny_run, "rerun_split.yaml", {"split": {"seed": 2}})
    jobs = plan(tiny_run, override)
    assert counts(jobs) == model_jobs(*cases(tiny_run)) + Counter(split=1), counts(jobs)


@pytest.mark.parametrize(
    "change",
    [
        {"batch_size": 5},
        {"tta": "mirror"},
        # new outputs (entropy maps, probabilities): requested, so they run
        {"tta": "mirror", "uncertainty": True, "save_probabilities": True},
    ],
)
def test_prediction_setting_reruns_prediction_not_training(tiny_run, change):
    override = write_config(tiny_run, "rerun_predict.yaml", {"predict": change})
    jobs = plan(tiny_run, override)
    expected = model_jobs(*cases(tiny_run)) - Counter(train=1)
    assert counts(jobs) == expected, counts(jobs)


def test_lesion_wise_setting_reruns_scoring_only(tiny_run):
    override = write_config(tiny_run, "rerun_lesions.yaml", {"evaluation": {"lesion_wise": "mets"}})
    jobs = plan(tiny_run, override)
    expected = model_jobs(*cases(tiny_run)) - Counter(
        train=1, predict=n_batches(cases(tiny_run)[0])
    )
    assert counts(jobs) == expected, counts(jobs)


def test_a_changed_input_image_reruns_its_case_and_what_depends_on_it(tiny_run, tmp_path):
    import nibabel as nib
    import numpy as np

    workdir = copy_workdir(tiny_run, tmp_path / "wf")
    case = sorted(p.stem for p in (workdir / "results/metrics/unet/cases").glob("*.tsv"))[0]
    path = next((workdir / "resources/demo" / case).glob("*_t1.nii.gz"))
    image = nib.load(path)
    data = np.asarray(image.dataobj).copy()
    data.flat[data.size // 2] += 1  # a rescan: new content (and a newer file)
    nib.save(nib.Nifti1Image(data, image.affine, image.header), path)
    jobs = plan(workdir)
    expected = model_jobs(*cases(tiny_run)) + Counter(
        preprocess=1, qc=1, ceiling=1, preprocess_summary=1
    )
    assert counts(jobs) == expected, counts(jobs)
    assert {w["case"] for r, w in jobs if r == "preprocess"} == {case}
    # QC and the ceiling do not depend on the model: only the changed case's batch reruns
    for step in ("qc", "ceiling"):
        assert [w["batch"] for r, w in jobs if r == step] == [str(batch_of(case, BATCHES))]


def test_an_edit_to_a_package_module_reruns_the_jobs_that_run_it(tiny_run, tmp_path):
    # segmentation.py runs in evaluate, and in aggregate and summarise (through aggregate.py)
    workdir = copy_workdir(tiny_run, tmp_path / "wf")
    module = workdir / "src/tumorseg/evaluation/segmentation.py"
    source = module.read_text()
    module.write_text(source + "\n# a comment: no new code\n")
    assert plan(workdir) == []
    module.write_text(source + "\n_EDITED = True\n")
    jobs = plan(workdir)
    expected = Counter(
        evaluate=n_batches(cases(tiny_run)[1]), aggregate=1, bundle=1, summarise=1, all=1
    )
    assert counts(jobs) == expected, counts(jobs)


@pytest.fixture(scope="module")
def two_models(tiny_run, tmp_path_factory):
    """A copy of the tiny run, planned and then run with a second model added."""
    workdir = copy_workdir(tiny_run, tmp_path_factory.mktemp("two_models") / "wf")
    first = workdir / "results/models/unet/model.keras"
    before = (first.stat().st_mtime_ns, first.read_bytes())
    override = write_config(
        workdir,
        "second_model.yaml",
        {
            "models": {
                "small": {
                    "architecture": "unet",
                    "depth": 2,
                    "base_filters": 4,
                    "epochs": 1,
                    "steps_per_epoch": 2,
                    "batch_size": 8,
                    "threads": 2,
                    "mem_mb": 2000,
                    "runtime": 10,
                }
            }
        },
    )
    jobs = plan(workdir, override)
    run_snakemake(workdir, "--configfile", TINY, override)
    after = (first.stat().st_mtime_ns, first.read_bytes())
    return workdir, override, jobs, before, after


def test_adding_a_model_trains_only_the_new_one(two_models, tiny_run):
    workdir, _, jobs, before, after = two_models
    assert counts(jobs) == model_jobs(*cases(tiny_run)), counts(jobs)
    assert {w.get("model") for r, w in jobs if r not in ("summarise", "all")} == {"small"}
    assert after == before, "the existing model was retrained"
    assert (workdir / "results/models/small/model.keras").is_file()
    summary = (workdir / "results/metrics/summary.tsv").read_text()
    assert "\nsmall\t" in summary and "\nunet\t" in summary


@pytest.mark.parametrize("model", ["unet", "small"])
def test_with_two_models_a_setting_change_reruns_only_that_model(two_models, tiny_run, model):
    workdir, second, _, _, _ = two_models
    override = write_config(workdir, "change_one.yaml", {"models": {model: {"epochs": 3}}})
    jobs = plan(workdir, second, override)
    assert counts(jobs) == model_jobs(*cases(tiny_run)), counts(jobs)
    assert {w.get("model") for r, w in jobs if r not in ("summarise", "all")} == {model}


def test_removing_a_model_reruns_only_the_summary(two_models):
    workdir, _, _, _, _ = two_models
    jobs = plan(workdir)  # tiny.yaml alone: the second model is gone
    assert counts(jobs) == Counter(summarise=1, all=1), counts(jobs)


def test_scripts_read_config_only_through_params():
    scripts = sorted((ROOT / "workflow" / "scripts").glob("*.py"))
    assert scripts
    offenders = [p.name for p in scripts if "snakemake.config" in p.read_text()]
    assert not offenders, f"scripts reading snakemake.config instead of params: {offenders}"


def test_two_runs_from_scratch_are_identical(tiny_run, tmp_path):
    again = make_workdir(tmp_path / "wf")
    run_snakemake(again, "--configfile", TINY)
    assert_same_results(tiny_run, again)


def test_a_new_case_with_a_kept_model_reruns_only_its_batch(tiny_run, tmp_path):
    # the trained model's bundle applied as `pretrained` from a copy, then one more case
    workdir = copy_workdir(tiny_run, tmp_path / "wf")
    shutil.copytree(workdir / "results/models/unet", workdir / "pretrained/unet")
    keep = {"pretrained": {"unet": "pretrained/unet"}}
    run_snakemake(workdir, "--configfile", TINY, write_config(workdir, "keep.yaml", keep))
    grow = {**keep, "demo": {"n_second_sessions": 3}}
    jobs = plan(workdir, write_config(workdir, "new_case.yaml", grow))
    new = [w["case"] for r, w in jobs if r == "preprocess"]
    assert len(new) == 1, jobs
    batch = str(batch_of(new[0], BATCHES))
    for step in ("qc", "ceiling", "predict", "evaluate"):
        assert [w["batch"] for r, w in jobs if r == step] == [batch], (step, jobs)
    assert {w["case"] for r, w in jobs if r == "demo_case"} == set(new)
    assert "train" not in counts(jobs)
