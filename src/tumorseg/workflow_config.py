"""Start-up checks of the config and the sample sheet (before any job runs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tumorseg.demo import phantom as demo
from tumorseg.errors import InputError
from tumorseg.io.layouts import BRATS_MODALITIES
from tumorseg.io.sheet import complete_sheet, read_sheet
from tumorseg.tasks import labels

#: the BraTS modality columns (the default `modalities` of a sheet with one file each)
#: default `image_channels`: a 4D Decathlon file, and an LGG slice stack's RGB channels
DEFAULT_CHANNELS = {"4d": ["flair", "t1", "t1ce", "t2"], "stack": ["t1", "flair", "t1ce"]}


#: losses of each task
TASK_LOSSES = {"segmentation": ("ce", "dice", "dice_ce"), "translation": ("mae", "mse", "mae_ssim")}
#: the model settings a task (or, for segmentation, binary masks) gives a model that leaves
#: them out, instead of the schema's defaults (segmentation's): translation learns the MAE
#: on every brain slice alike (it has no lesion to sample by); binary masks learn BCE +
#: 0.3 soft Dice, the LGG tutorial's loss
TASK_DEFAULTS = {
    "translation": {"loss": "mae", "lesion_sampling": False},
    "binary": {"loss": "dice_ce", "ce_weight": 1.0, "dice_weight": 0.3},
}


def task_defaults(config: dict) -> dict:
    """The model settings of :data:`TASK_DEFAULTS` for the config's task and label map."""
    if config.get("task", "segmentation") == "translation":
        return TASK_DEFAULTS["translation"]
    return TASK_DEFAULTS["binary"] if config.get("label_convention") == "binary" else {}


def apply_task_defaults(config: dict, given: dict) -> None:
    """Give every model the task's defaults (:func:`task_defaults`) for the settings that
    ``given``, the config as the user wrote it (before the schema filled its defaults),
    leaves out; a setting the user wrote is kept, and :func:`check_task` refuses one that
    does not fit the task."""
    defaults = task_defaults(config)
    written = given.get("models") or {}
    for name, settings in config["models"].items():
        explicit = written.get(name) or {}
        settings.update({k: v for k, v in defaults.items() if k not in explicit})


def check_task(config: dict) -> None:
    """The task's settings: translation inputs and target, and every model's loss."""
    task = config.get("task", "segmentation")
    if task == "translation":
        tr = config["translation"]
        if tr["target"] in tr["inputs"]:
            raise InputError(f"config translation.target {tr['target']} is also an input")
        unet3d = [n for n, m in config["models"].items() if m.get("architecture") == "unet3d"]
        if unet3d:
            raise InputError(
                f"config models {unet3d}: the 3D U-Net segments; translation trains the 2D "
                "U-Net or the CNN (architecture unet or cnn)"
            )
    for name, settings in config["models"].items():
        if settings.get("loss", "dice_ce") not in TASK_LOSSES[task]:
            raise InputError(
                f"config models.{name}: loss {settings.get('loss', 'dice_ce')} is not a {task} "
                "loss; "
                f"choose one of {', '.join(TASK_LOSSES[task])}"
            )


def check_config(config: dict) -> None:
    """Checks the JSON schema cannot express."""
    check_task(config)
    ratios = config["split"]["ratios"]
    total = sum(ratios.values())
    if abs(total - 1.0) > 1e-6:
        raise InputError(f"config split.ratios must sum to 1, they sum to {total:g}: {ratios}")
    canon = config["preprocess"]["canonical"]["size"]
    crop = config["preprocess"]["crop"]["size"]
    if crop[0] > canon[0] or crop[1] > canon[1]:
        raise InputError(
            f"config preprocess.crop.size {crop} is larger than the canonical grid {canon[:2]}"
        )
    factors = config["preprocess"]["downsample"]
    shape = [crop[0] // factors[0], crop[1] // factors[1], canon[2] // factors[2]]
    if min(shape) < 1:
        raise InputError(f"config preprocess.downsample {factors} leaves no voxel")
    if config["label_convention"] == "custom" and not config["labels"]:
        raise InputError("config label_convention custom needs `labels: {name: value}`")
    if config["label_convention"] != "custom" and (config["labels"] or config["regions"]):
        raise InputError(
            f"config `labels` and `regions` are only read with label_convention custom "
            f"(it is {config['label_convention']})"
        )
    labels.check_spec(labels.spec_from_config(config))
    check_outputs(config)
    check_ensembles(config)
    if config["postprocessing"]["enabled"] and config.get("task") == "translation":
        raise InputError("config postprocessing.enabled: post-processing is for segmentation")
    if config["predict"]["uncertainty"] and config["predict"]["tta"] == "none":
        if not ensemble_runs(config):
            raise InputError(
                "config predict.uncertainty needs several predictions to average: set "
                "predict.tta: mirror, or split.cv_folds >= 2 or `ensembles` for an ensemble"
            )
    unknown = sorted(set(config["pretrained"]) - set(config["models"]))
    if unknown:
        raise InputError(f"config pretrained names models not in `models`: {unknown}")
    for name, settings in config["models"].items():
        kernels, rates = settings["kernels"], settings["dilation_rates"]
        if settings["architecture"] == "cnn" and len(rates) not in (1, len(kernels)):
            raise InputError(
                f"config models.{name}: dilation_rates needs 1 or {len(kernels)} values "
                f"(one per kernel count), got {len(rates)}"
            )


def model_runs(config: dict) -> dict[str, tuple[str, int | None]]:
    """Run name -> (model name, fold). One run per model, or one per model and fold."""
    folds = config["split"]["cv_folds"]
    runs: dict[str, tuple[str, int | None]] = {}
    for name in config["models"]:
        if folds >= 2 and name not in config["pretrained"]:
            for k in range(folds):
                runs[f"{name}.fold{k}"] = (name, k)
        else:
            runs[name] = (name, None)
    return runs


#: the suffix of a model's fold ensemble run (``unet.ensemble``)
ENSEMBLE_SUFFIX = ".ensemble"


def ensemble_runs(config: dict) -> dict[str, list[str]]:
    """Ensemble run -> the model names it averages. With ``split.cv_folds >= 2`` each trained
    segmentation model gets a fold ensemble ``<model>.ensemble`` (its k fold models); every
    entry of ``ensembles`` (an ensemble of architectures) averages its member models, each
    itself the average of its folds where it has folds. Translation has no ensembles."""
    if config.get("task", "segmentation") == "translation":
        return {}
    runs = {}
    if config["split"]["cv_folds"] >= 2:
        for name in config["models"]:
            if name not in config["pretrained"]:
                runs[f"{name}{ENSEMBLE_SUFFIX}"] = [name]
    runs.update({name: list(members) for name, members in config["ensembles"].items()})
    return runs


def ensemble_members(config: dict, members: list[str]) -> list[tuple[str, str, int | None]]:
    """``(model name, run, fold)`` of every model an ensemble of ``members`` loads: a model's
    k fold runs where it has folds (each predicts its own validation fold out of fold), else
    its one run."""
    runs = model_runs(config)
    return [(name, run, fold) for name in members for run, (n, fold) in runs.items() if n == name]


def member_runs(config: dict, members: list[str]) -> list[str]:
    """The prediction runs an ensemble of architectures competes with: each member's fold
    ensemble where it has folds, else its run."""
    ensembles = ensemble_runs(config)
    return [
        f"{name}{ENSEMBLE_SUFFIX}" if f"{name}{ENSEMBLE_SUFFIX}" in ensembles else name
        for name in members
    ]


def check_outputs(config: dict) -> None:
    """``output: regions``: segmentation only, on a label map whose regions nest."""
    region_models = [n for n, m in config["models"].items() if m.get("output") == "regions"]
    if not region_models:
        return
    if config.get("task", "segmentation") == "translation":
        raise InputError(f"config models {region_models}: output: regions is for segmentation")
    labels.as_label_map(labels.spec_from_config(config)).region_painting()


def check_ensembles(config: dict) -> None:
    """``ensembles``: names of their own, two or more known members, segmentation only."""
    for name, members in config["ensembles"].items():
        where = f"config ensembles.{name}"
        if config.get("task", "segmentation") == "translation":
            raise InputError(f"{where}: ensembles average class probabilities (segmentation)")
        if name in config["models"]:
            raise InputError(f"{where}: the name is already a model's; give it another")
        unknown = [m for m in members if m not in config["models"]]
        if unknown:
            raise InputError(f"{where} names models not in `models`: {unknown}")
        if len(set(members)) < 2:
            raise InputError(f"{where} needs two or more different models, got {members}")
        outputs = {config["models"][m].get("output", "classes") for m in members}
        if len(outputs) > 1:
            raise InputError(
                f"{where} mixes class and region outputs: their probabilities cannot be "
                "averaged; give every member the same `output`"
            )


def demo_sheet(config: dict) -> pd.DataFrame:
    """The demo dataset's sheet, known from the config alone (the files come later)."""
    d = config["demo"]
    table = demo.case_table(
        d["n_scanners"], d["n_subjects"], d["n_second_sessions"], d["n_unlabelled"]
    )
    rows = []
    for _, r in table.iterrows():
        row = {"case": r["case"], "subject": r["subject"], "scanner": r["scanner"]}
        for mod in config["modalities"]:
            row[mod] = f"{r['case']}/{r['case']}_{mod}.nii.gz"
        reference = (
            config["translation"]["target"] if config.get("task") == "translation" else "seg"
        )
        row["seg"] = f"{r['case']}/{r['case']}_{reference}.nii.gz" if r["labelled"] else ""
        rows.append(row)
    return pd.DataFrame(rows)


def sheet_kind(df: pd.DataFrame, sheet_dir: str | Path) -> str:
    """``files`` (a column per modality), ``4d`` (one 4D `image` file) or ``stack`` (an
    `image` folder of numbered slices); the sheet check reports mixed sheets."""
    if "image" not in df.columns:
        return "files"
    values = [v for v in df["image"] if v]
    base = Path(sheet_dir)
    folders = [(base / Path(v).expanduser()).is_dir() for v in values]
    return "stack" if folders and all(folders) else "4d"


def resolve_channels(config: dict, kind: str) -> None:
    """Fill `image_channels` and `modalities` left null with the layout's defaults."""
    if config["image_channels"] is None:
        config["image_channels"] = list(DEFAULT_CHANNELS["stack" if kind == "stack" else "4d"])
    if config["modalities"] is None:
        config["modalities"] = (
            list(BRATS_MODALITIES) if kind == "files" else list(config["image_channels"])
        )


def sample_table(config: dict, basedir: str | Path) -> pd.DataFrame:
    """The completed sample sheet: demo (from the config) or the user's (checked now).
    Null `modalities` / `image_channels` are resolved in ``config`` on the way."""
    basedir = Path(basedir)
    if config.get("task") == "translation":  # the inputs feed the model
        config["modalities"] = list(config["translation"]["inputs"])
    if config["demo"]["enabled"]:
        resolve_channels(config, "files")
        if set(config["modalities"]) - {"flair", "t1", "t1ce", "t2"}:
            raise InputError(
                f"the demo dataset has modalities flair, t1, t1ce, t2; config modalities "
                f"{config['modalities']} asks for others"
            )
        outdir = Path(config["demo"]["outdir"])
        df = demo_sheet(config)
        sheet = complete_sheet(
            df, outdir, config["modalities"], config["scanner_regex"], check_files=False
        )
        for col in [*config["modalities"], "seg"]:
            sheet[col] = sheet[col].map(_relative)
        return sheet
    path = Path(config["samples"])
    df = read_sheet(path)
    if config.get("task") == "translation":
        df = _target_as_reference(df, config["translation"]["target"], path)
    resolve_channels(config, sheet_kind(df, path.parent))
    return complete_sheet(df, path.parent, config["modalities"], config["scanner_regex"], path)


def _target_as_reference(df: pd.DataFrame, target: str, path) -> pd.DataFrame:
    """Translation: the target modality's column is the reference (``seg``) of each case;
    a case without it is predicted, not scored."""
    if "image" in df.columns:
        raise InputError(
            "translation needs one column per modality (its inputs and its target), not one "
            "4D or slice-stack `image` column",
            path=path,
        )
    if target not in df.columns:
        raise InputError(f"the sheet has no `{target}` column, the translation target", path=path)
    df = df.drop(columns=[c for c in ("seg",) if c in df.columns])
    return df.rename(columns={target: "seg"})


def preprocess_settings(config: dict, stacks: bool) -> dict:
    """Every config value the preprocessing step reads (its `params`), for one sheet kind:
    slice-stack settings only for stacks, so changing them reruns nothing else."""
    pre = config["preprocess"]
    translation = config.get("task") == "translation"
    settings = {
        "modalities": config["modalities"],
        "image_channels": config["image_channels"],
        **(
            {"target": config["translation"]["target"]}
            if translation
            else {"labels": labels.spec_from_config(config)}
        ),
        "brain_mask": pre["brain_mask"],
        "brain_threshold": pre["brain_threshold"],
    }
    if stacks:
        settings["stack"] = dict(pre["slices"])
    else:
        settings.update(
            canonical_size=pre["canonical"]["size"],
            canonical_spacing=pre["canonical"]["spacing"],
            crop_size=pre["crop"]["size"],
            crop_mode=pre["crop"]["mode"],
            downsample=pre["downsample"],
        )
    return settings


def _relative(p: str) -> str:
    """Demo paths stay relative to the working directory, as Snakemake outputs are."""
    if not p:
        return p
    try:
        return str(Path(p).relative_to(Path.cwd()))
    except ValueError:
        return p
