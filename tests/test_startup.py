"""Start-up, in dry runs (seconds): the task's model defaults, and the profile's
`set-resources`/`set-threads` for a step reaching each of its batch rules."""

import os
import re

import pytest
import yaml
from workflow_helpers import make_workdir, run_snakemake, shipped_config, write_config

from tumorseg.batches import assign_batches, auto_batches
from tumorseg.errors import InputError
from tumorseg.workflow_config import TASK_DEFAULTS, apply_task_defaults, check_task


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("startup") / "wf")


def jobs(dry_run_output: str) -> dict[str, dict]:
    """Rule name -> {"threads": int, "resources": {...}} of every job a dry run lists."""
    found = {}
    for block in dry_run_output.split("\nrule ")[1:]:
        name = block.split(":", 1)[0].strip()
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        resources = re.search(r"^\s+resources: (.+)$", block, re.M)
        pairs = (kv.split("=", 1) for kv in resources.group(1).split(", ")) if resources else ()
        found[name] = {
            "threads": int(threads.group(1)) if threads else 1,
            "resources": dict(pairs),
        }
    return found


def test_set_resources_and_set_threads_of_a_step_reach_its_batch_rules(workdir):
    proc = run_snakemake(
        workdir, "-n", "--cores", "8", "--configfile", "tests/config/tiny.yaml",
        "--set-resources", "predict:mem_mb=1234", "evaluate:runtime=77", "qc:mem_mb=321",
        "--set-threads", "predict=3",
    )  # fmt: skip
    found = jobs(proc.stdout)
    predict = {n: j for n, j in found.items() if n.startswith("predict_unet_b")}
    evaluate = {n: j for n, j in found.items() if n.startswith("evaluate_unet_b")}
    qc = {n: j for n, j in found.items() if re.fullmatch(r"qc_b\d+", n)}
    assert len(predict) == len(evaluate) == len(qc) == 2, sorted(found)
    assert all(j["threads"] == 3 and j["resources"]["mem_mb"] == "1234" for j in predict.values())
    assert all(j["resources"]["runtime"] == "77" for j in evaluate.values())
    assert all(j["resources"]["mem_mb"] == "321" for j in qc.values())
    # other steps keep their own
    others = [j for n, j in found.items() if n not in predict]
    assert all(j["resources"].get("mem_mb") != "1234" for j in others)


def test_without_overrides_the_batch_rules_keep_their_own_resources(workdir):
    found = jobs(run_snakemake(workdir, "-n", "--configfile", "tests/config/tiny.yaml").stdout)
    predict = [j for n, j in found.items() if n.startswith("predict_unet_b")]
    assert predict and all(j["resources"].get("mem_mb") != "1234" for j in predict)


def _translation_config(workdir, name, model):
    tiny = yaml.safe_load((workdir / "tests/config/tiny.yaml").read_text())
    tiny["models"]["unet"].update(model)
    for key in ("loss", "lesion_sampling"):
        if key not in model:
            tiny["models"]["unet"].pop(key, None)
    config = {**tiny, "task": "translation", "translation": {"inputs": ["t1"], "target": "t2"}}
    return write_config(workdir, name, config)


def test_a_translation_model_that_names_no_loss_starts(workdir):
    # the schema's defaults are segmentation's (dice_ce, lesion sampling): the task's win
    config = _translation_config(workdir, "translation_defaults.yaml", {})
    proc = run_snakemake(workdir, "-n", "--configfile", config, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # an explicit loss that does not fit the task is still refused
    config = _translation_config(workdir, "translation_dice.yaml", {"loss": "dice_ce"})
    proc = run_snakemake(workdir, "-n", "--configfile", config, check=False)
    assert proc.returncode != 0
    assert "loss dice_ce is not a translation loss" in proc.stdout + proc.stderr


TRANSLATION = {"translation": {"inputs": ["t1"], "target": "t2"}}


def _validated(config: dict) -> dict:
    """The config after the schema filled segmentation's defaults into every model."""
    models = {
        name: {"loss": "dice_ce", "lesion_sampling": True, "ce_weight": 1.0, "dice_weight": 1.0}
        | settings
        for name, settings in config["models"].items()
    }
    return {**config, "models": models}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (  # translation: MAE on every brain slice alike
            {"task": "translation", **TRANSLATION, "models": {"a": {}, "b": {"loss": "mse"}}},
            {"a": ("mae", False, 1.0, 1.0), "b": ("mse", False, 1.0, 1.0)},
        ),
        (  # binary masks: BCE + 0.3 Dice, the LGG tutorial's; an explicit weight is kept
            {"label_convention": "binary", "models": {"a": {}, "b": {"dice_weight": 0.5}}},
            {"a": ("dice_ce", True, 1.0, 0.3), "b": ("dice_ce", True, 1.0, 0.5)},
        ),
        (  # BraTS: the schema's defaults
            {"label_convention": "brats2017", "models": {"a": {}}},
            {"a": ("dice_ce", True, 1.0, 1.0)},
        ),
    ],
)
def test_the_task_decides_the_defaults_a_model_leaves_out(given, expected):
    config = _validated(given)
    apply_task_defaults(config, given)
    keys = ("loss", "lesion_sampling", "ce_weight", "dice_weight")
    assert {n: tuple(m[k] for k in keys) for n, m in config["models"].items()} == expected
    check_task(config)


def test_an_explicit_setting_that_does_not_fit_the_task_is_refused():
    given = {"task": "translation", **TRANSLATION, "models": {"a": {"loss": "dice"}}}
    config = _validated(given)
    apply_task_defaults(config, given)
    with pytest.raises(InputError, match="models.a: loss dice is not a translation loss"):
        check_task(config)
    assert TASK_DEFAULTS["translation"]["loss"] == "mae"


def _auto_config(workdir, name: str, subjects: int) -> str:
    tiny = yaml.safe_load((workdir / "tests/config/tiny.yaml").read_text())
    tiny["demo"]["n_subjects"] = subjects
    return write_config(workdir, name, {**tiny, "predict": {"batches": "auto"}})


#: the cores this machine lets Snakemake use (auto counts at most these)
HAVE = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    "subjects, cores",
    [(7, 1), (7, 2), (7, 16), (60, 1), (60, 2), (120, 2)],
)
def test_auto_batches_follow_the_cases_and_the_cores(workdir, subjects, cores):
    config = _auto_config(workdir, f"auto_{subjects}.yaml", subjects)
    proc = run_snakemake(workdir, "-n", "--cores", str(cores), "--configfile", config)
    said = re.search(r"predict.batches: auto = (\d+) \((\d+) cases", proc.stdout + proc.stderr)
    assert said, proc.stderr[-2000:]
    n_cases = int(said.group(2))
    expected = auto_batches(n_cases, min(cores, HAVE))
    assert int(said.group(1)) == expected
    if (subjects, cores) in ((60, 1), (60, 2)):
        assert expected == 2  # 67 cases: by size, whatever the cores
    if (subjects, cores) == (120, 2):
        assert expected == 4  # 127 cases
    if cores == 16:  # --cores above the machine's: its own cores count
        assert expected == min(8, 1 << (min(16, HAVE).bit_length() - 1))
    found = jobs(proc.stdout)
    predict = [n for n in found if n.startswith("predict_unet_b")]
    qc = [n for n in found if re.fullmatch(r"qc_b\d+", n)]
    cases = set(re.findall(r"wildcards: case=([\w-]+)", proc.stdout))
    assert len(cases) == n_cases
    assert len(predict) == len(qc) == len(assign_batches(cases, expected))


def test_tta_both_adds_a_mirrored_twin_of_every_run_but_single_folds(workdir):
    """predict.tta: both: `<run>.tta` beside each ensemble (and run without folds), scored
    and post-processed like it; the twin of an ensemble reads the split for its folds."""
    config = write_config(workdir, "both.yaml", {"predict": {"tta": "both"}})
    args = ("--configfile", "tests/config/tiny.yaml", "tests/config/tiny_cv.yaml", config)
    proc = run_snakemake(workdir, "-n", *args)
    found = jobs(proc.stdout)
    for step in ("predict", "evaluate"):
        assert f"{step}_unet_ensemble_tta_b0" in found and f"{step}_unet_ensemble_b0" in found
        assert not any(n.startswith(f"{step}_unet_fold0_tta") for n in found)
    assert "postprocess_unet_ensemble_tta_pp_b0" in found
    block = proc.stdout.split("rule predict_unet_ensemble_tta_b0:")[1].split("\nrule ")[0]
    assert "results/splits/splits.tsv" in block


def test_prediction_holds_a_gpu_only_where_the_machine_has_gpus(workdir):
    config = ("--configfile", "tests/config/tiny.yaml")
    cpu = jobs(run_snakemake(workdir, "-n", *config, env={"CUDA_VISIBLE_DEVICES": ""}).stdout)
    gpus = jobs(run_snakemake(workdir, "-n", *config, env={"CUDA_VISIBLE_DEVICES": "0,1"}).stdout)
    for found, held in ((cpu, "0"), (gpus, "1")):
        predict = [j for n, j in found.items() if n.startswith("predict_unet_b")]
        assert predict and all(j["resources"].get("gpu", "0") == held for j in predict)
        assert found["train"]["resources"]["gpu"] == "1"


def test_a_bundle_setting_changed_in_the_config_is_refused_before_any_job(workdir, tmp_path):
    """A bundle (here with stand-in weights: nothing loads them before a job) brings its
    preprocessing, over the shipped config.yaml's; a config that changed one of its settings
    stops at start-up, naming both values, and one that leaves them alone plans prediction
    without training."""
    from tumorseg.bundle.manifest import write_manifest

    trained = shipped_config()
    trained["preprocess"]["crop"]["size"] = [160, 160]  # config.yaml's 192 gives way
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet/model.keras").write_bytes(b"stand-in")
    write_manifest(tmp_path / "unet", trained, "unet")
    apply = {"pretrained": {"unet": str(tmp_path / "unet")}}
    ok = write_config(workdir, "bundle_ok.yaml", apply)
    proc = run_snakemake(workdir, "-n", "--configfile", ok, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = jobs(proc.stdout)
    assert "train" not in planned and any(r.startswith("predict_unet_b") for r in planned)
    bad = write_config(
        workdir, "bundle_bad.yaml", {**apply, "preprocess": {"downsample": [1, 1, 1]}}
    )
    proc = run_snakemake(workdir, "-n", "--configfile", bad, check=False)
    assert proc.returncode != 0
    said = proc.stdout + proc.stderr
    assert (
        "config preprocess.downsample is [1, 1, 1], but the model bundle was trained with [2, 2, 2]"
        in said
    )
    assert "rule " not in said  # no job planned
