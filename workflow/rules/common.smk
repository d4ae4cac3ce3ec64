import copy
import os
import sys
from pathlib import Path

import yaml

from snakemake.logging import logger
from snakemake.resources import Resource, Resources
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from tumorseg.demo import phantom as demo  # noqa: E402
from tumorseg.bundle.manifest import config_sha256, manifest as make_manifest  # noqa: E402
from tumorseg.bundle.settings import apply_bundles  # noqa: E402
from tumorseg.batches import assign_batches, auto_batches, batch_runtime  # noqa: E402
from tumorseg.code_digest import script_digests  # noqa: E402
from tumorseg.gpus import usable_gpus  # noqa: E402
from tumorseg.inference.tta import mirror_axes  # noqa: E402
from tumorseg.tasks.labels import spec_from_config  # noqa: E402
from tumorseg.training.memory import estimate_mem_mb  # noqa: E402
from tumorseg.io.slices import is_stack  # noqa: E402
from tumorseg.resources import RUNTIME_KEYS  # noqa: E402
from tumorseg.workflow_config import (  # noqa: E402
    apply_task_defaults,
    check_config,
    ensemble_members,
    ensemble_runs,
    member_runs,
    model_runs,
    preprocess_settings,
    sample_table,
)

DEFAULT_CONFIG = "config/config.yaml"  # the Snakefile's `configfile:`
GIVEN_CONFIG = copy.deepcopy(config)  # as written: the task's defaults fill what it leaves out
validate(config, schema="../schemas/config.schema.yaml")
apply_task_defaults(config, GIVEN_CONFIG)
# the default config file, as shipped: a bundle's setting overrides its values, not the user's
LOADED = {str(Path(f).resolve()) for f in workflow.configfiles}
SHIPPED = (
    yaml.safe_load(Path(DEFAULT_CONFIG).read_text())
    if str(Path(DEFAULT_CONFIG).resolve()) in LOADED
    else {}
)
BUNDLES = apply_bundles(config, GIVEN_CONFIG, SHIPPED or {}, "resources/bundles")
validate(config, schema="../schemas/config.schema.yaml")  # the defaults of a bundle's model
check_config(config)

SAMPLES = sample_table(config, workflow.basedir)  # also resolves null modalities
validate(SAMPLES, schema="../schemas/samples.schema.yaml")
CASES = list(SAMPLES["case"])
LABELLED = list(SAMPLES.loc[SAMPLES["labelled"], "case"])
FOUR_D = "image" in SAMPLES.columns
# slice stacks (the LGG layout): one folder of numbered 2D slices per case
STACKS = FOUR_D and all(is_stack(p) for p in SAMPLES["image"])
SHEET_KIND = "stack" if STACKS else "4d" if FOUR_D else "files"  # what a bundle's model takes
IMAGE_COLUMNS = ["image"] if FOUR_D else list(config["modalities"])
TRANSLATION = config["task"] == "translation"
TARGET = config["translation"]["target"]  # the modality a translation model synthesises
# the label map every segmentation step receives as a param (None: translation)
LABELS = None if TRANSLATION else spec_from_config(config)
PREPROCESS = preprocess_settings(config, STACKS)
# what a case is trained on: its label classes, or its z-scored target
TRUTH = "target" if TRANSLATION else "label"
# a prediction: a NIfTI on the input's grid, or a folder of <id>_<k>_mask.tif for a stack
PRED = "results/predictions/{model}/{case}" + (
    f"_{TARGET}.nii.gz" if TRANSLATION else "" if STACKS else "_seg.nii.gz"
)
SAVE_PROBS = config["predict"]["save_probabilities"] and not TRANSLATION
PROBS = "results/predictions/{model}/{case}_probs.nii.gz"
# predict.uncertainty: the entropy of the averaged probabilities (the schema asks for TTA)
UNCERTAINTY = config["predict"]["uncertainty"] and not TRANSLATION
ENTROPY = "results/uncertainty/{model}/{case}_entropy.nii.gz"
CASE_METRICS = "results/metrics/{model}/cases/{case}.tsv"
CEILING = "results/ceiling/{case}" + (f"_{TARGET}.nii.gz" if TRANSLATION else "_seg.nii.gz")
# the demo writes the target too when it is synthesised
DEMO_MODALITIES = list(dict.fromkeys([*config["modalities"], *([TARGET] if TRANSLATION else [])]))
RUNS = model_runs(config)  # run name -> (model name, fold or None)
# ensemble run -> the model names it averages (fold ensembles, `ensembles`)
ENSEMBLES = ensemble_runs(config)
# predict.tta: both: every run but a single fold also predicts mirrored, as `<run>.tta`
TWINS = [
    f"{run}.tta"
    for run in [*RUNS, *ENSEMBLES]
    if config["predict"]["tta"] == "both"
    and not TRANSLATION
    and RUNS.get(run, (None, None))[1] is None
]
PREDICTED = [*RUNS, *ENSEMBLES, *TWINS]  # every run that predicts
# postprocessing.enabled: each run's post-processed predictions are the run `<run>.pp`
POSTPROCESS = config["postprocessing"]["enabled"] and not TRANSLATION
POSTPROCESSED = [f"{run}.pp" for run in PREDICTED] if POSTPROCESS else []
SCORED = [*PREDICTED, *POSTPROCESSED]  # every run that is scored and compared
# predict.batches: auto becomes a number here, from the cases and (in a local run) the cores
if config["predict"]["batches"] == "auto":
    # the cores a local run can use at once: --cores, at most the machine's
    PARALLEL = min(workflow._cores or 1, len(os.sched_getaffinity(0))) if workflow.local_exec else 1
    config["predict"]["batches"] = auto_batches(len(CASES), PARALLEL)
    if workflow.is_main_process:
        logger.info(
            f"predict.batches: auto = {config['predict']['batches']} ({len(CASES)} cases, "
            f"{PARALLEL} cores)"
        )
# in a local run, prediction jobs hold a `gpu` like training where this machine has GPUs (so
# a training job never loses its GPU memory to them); on a CPU machine they run beside
# training; on a cluster the profile asks for their GPU (`gres`)
PREDICT_GPU = 1 if workflow.local_exec and usable_gpus() else 0
DEMO_DIR = config["demo"]["outdir"]
# per step script: a digest of the package modules it imports (rule param `code`), so an
# edit to src/tumorseg reruns the jobs that run the edited code
CODE = script_digests(
    Path(workflow.basedir) / "workflow" / "scripts", Path(workflow.basedir) / "src"
)


wildcard_constraints:
    case=r"[A-Za-z0-9_-]+",
    model=r"[A-Za-z][A-Za-z0-9_]*(\.fold[0-9]+|\.ensemble)?(\.tta)?(\.pp)?",


def case_images(wildcards):
    """Native image files of a case (one per modality, or the 4D image) and its label."""
    row = SAMPLES.loc[wildcards.case]
    files = {col: row[col] for col in IMAGE_COLUMNS}
    if row["labelled"]:
        files["target" if TRANSLATION else "seg"] = row["seg"]
    if row.get("mask", ""):
        files["mask"] = row["mask"]
    return files


def reference_of(case):
    """The native file whose grid a case's prediction must land on."""
    return SAMPLES.loc[case, IMAGE_COLUMNS[0]]


def run_batches(cases, runs=None):
    """(model run, batch number, its cases) of every batch job (config predict.batches) of
    ``runs`` (default: the runs that predict)."""
    batches = assign_batches(cases, config["predict"]["batches"])
    return [(run, b, members) for run in runs or PREDICTED for b, members in batches.items()]


def raw_run(run):
    """The run whose raw predictions a post-processed run `<run>.pp` post-processes."""
    return run.removesuffix(".pp")


def model_run(run):
    """The trained run or ensemble whose models a run predicts with (`unet.ensemble` for
    `unet.ensemble.tta.pp`)."""
    return raw_run(run).removesuffix(".tta")


def mirrors(run):
    """Whether a run mirrors at test time: predict.tta: mirror, or a `<run>.tta` twin."""
    return config["predict"]["tta"] == "mirror" or raw_run(run).endswith(".tta")


def batch_rule(step, run, batch):
    """The name of a batch job's rule: `predict_unet_b3`, `evaluate_unet_fold1_b0`."""
    return f"{step}_{run.replace('.', '_')}_b{batch}"


def apply_profile(step, name):
    """`set-resources` and `set-threads` given for a step (`qc`, `predict`, `evaluate`,
    `ceiling`) in a profile or on the command line apply to each of its batch rules, as
    Snakemake applies them to a rule of that name (from its public resource settings)."""
    settings = workflow.resource_settings
    resources = getattr(rules, name).rule.resources
    resources.update(Resources.from_mapping(settings.overwrite_resources.get(step, {})))
    threads = settings.overwrite_threads.get(step)
    if threads is not None:
        resources["_cores"] = (
            threads if isinstance(threads, Resource) else Resource("_cores", threads)
        )


def model_file(wildcards):
    return model_file_of(wildcards.model)


def model_file_of(run):
    """A run's model file, or an ensemble run's model files (those of its members)."""
    run = model_run(run)
    if run in ENSEMBLES:
        return [model_file_of(member) for _, member, _ in ensemble_members(config, ENSEMBLES[run])]
    name, _ = RUNS[run]
    return config["pretrained"].get(name, f"results/models/{run}/model.keras")


def members_of(run):
    """An ensemble run's members (in the order of model_file_of) as the predict job takes
    them: model name, fold, sliding window and mirrored axes; None for a single model."""
    if model_run(run) not in ENSEMBLES:
        return None
    return [
        {
            "name": name,
            "fold": fold,
            "windows": windows_of(member),
            "mirror": mirror_axes_of(member, mirrors(run)),
        }
        for name, member, fold in ensemble_members(config, ENSEMBLES[model_run(run)])
    ]


def validation_fold(wildcards):
    """Which cases a run's scores count as validation (aggregate): a fold run's own fold,
    all cases of the folds for an ensemble with folds (out of fold); None: the split's."""
    run = model_run(wildcards.model)
    if run in RUNS:
        return RUNS[run][1]
    return "all" if config["split"]["cv_folds"] >= 2 else None


def compared_members():
    """Each ensemble of architectures -> the runs it must beat on validation (comparison)."""
    compared = {
        run: member_runs(config, members)
        for run, members in ENSEMBLES.items()
        if run in config["ensembles"]
    }
    twins = {f"{run}.tta": [f"{m}.tta" for m in members] for run, members in compared.items()}
    return {**compared, **{run: m for run, m in twins.items() if run in PREDICTED}}


def model_settings(wildcards):
    return config["models"][RUNS[wildcards.model][0]]


def all_targets():
    targets = [
        "results/splits/splits.tsv",
        "results/splits/summary.tsv",
        "results/splits/splits.png",
        "results/metrics/summary.tsv",
        "results/metrics/comparison.tsv",
    ]
    targets += expand("results/preprocessed/{case}/qc.png", case=CASES)
    for run in SCORED:
        if run in RUNS and RUNS[run][0] not in config["pretrained"]:
            targets.append(f"results/models/{run}/bundle.json")
        targets += expand(PRED, model=run, case=CASES)
        # optional outputs of the predict jobs, requested so that turning one on runs them
        targets += expand(PROBS, model=run, case=CASES) if SAVE_PROBS else []
        targets += expand(ENTROPY, model=run, case=CASES) if averages(run) else []
        targets += (
            [f"results/postprocessing/{run}.json"] if POSTPROCESS and run in PREDICTED else []
        )
        targets += expand(
            "results/metrics/{model}/{name}",
            model=run,
            name=["per_case.tsv", "boxplots.png", "overlays.png"],
        )
    return targets


def averages(run):
    """Whether a run writes an entropy map (predict.uncertainty): where it averages several
    predictions (an ensemble, or test-time mirroring)."""
    if not UNCERTAINTY or run not in PREDICTED:
        return False
    return model_run(run) in ENSEMBLES or bool(mirror_of(run))


def bundle_manifest(wildcards):
    """A trained run's bundle.json, but for the model's digest and card (the bundle rule
    adds them)."""
    name, fold = RUNS[wildcards.model]
    return make_manifest(
        config, name, wildcards.model, fold, training_settings(wildcards), SHEET_KIND
    )


def bundle_config_digest(wildcards):
    """The model card's config digest: what made this model (its bundle's settings, the
    data, the split and the training switches), not what only sizes or schedules jobs."""
    made_of = {k: config[k] for k in ("demo", "samples", "split", "training")}
    return config_sha256({"bundle": bundle_manifest(wildcards), **made_of})


def train_mem_mb(wildcards):
    """The model's `mem_mb`, raised for a 3D U-Net to the estimate from its patch and
    batch size (the training log prints the same estimate)."""
    settings = model_settings(wildcards)
    if settings["architecture"] != "unet3d":
        return settings["mem_mb"]
    n_classes = len(LABELS["labels"]) + 1 if LABELS else 1
    channels = len(config["modalities"])
    return max(settings["mem_mb"], estimate_mem_mb(settings, channels, n_classes))


def training_settings(wildcards):
    """A model's settings that shape its weights (not its threads, memory or wall time)."""
    settings = model_settings(wildcards)
    return {k: v for k, v in settings.items() if k not in RUNTIME_KEYS}


def preprocessed(names, cases):
    return expand("results/preprocessed/{case}/{name}", case=cases, name=names)


def warn_if_oversubscribed():
    """Warn when a local run is given more cores than the machine lets it use (`--cores 8`
    on a 2-core laptop): Snakemake then runs jobs whose threads add up to 8 on 2 cores."""
    if not (workflow.is_main_process and workflow.local_exec) or workflow._cores is None:
        return
    have = len(os.sched_getaffinity(0))
    if workflow._cores > have:
        logger.warning(
            f"--cores {workflow._cores} is more than the {have} CPU cores this machine "
            f"lets Snakemake use: jobs whose threads add up to {workflow._cores} will share "
            f"{have} cores, each running slower, and nothing finishes sooner. Pass "
            f"--cores {have} or --cores all (README, 'Threads and cores')."
        )


def warn_if_batches_are_large(per_batch=500):
    """Warn when batch jobs hold so many cases that planning the DAG slows down (Snakemake's
    checks of a job's input and output lists grow with the square of their length)."""
    n = config["predict"]["batches"]
    if workflow.is_main_process and len(CASES) > per_batch * n:
        logger.warning(
            f"predict.batches: {n} puts about {len(CASES) // n} cases in each batch job; "
            f"planning a run this size takes much longer than it needs to (README, "
            f"'Performance'). Set predict.batches to about {len(CASES) // 200} "
            "(200 cases a batch) or to the number of GPUs you have."
        )


warn_if_oversubscribed()
warn_if_batches_are_large()
