"""``tumorseg-predict -i FOLDER -o OUT -m BUNDLE``: a trained model applied to new patients.

The input is a dataset folder in any layout ``tumorseg-sheet`` recognises, or one case's
files (one per modality in the model's order, or one 4D file). The command writes the
sheet and a config that applies the bundle (:mod:`tumorseg.bundle.settings`), then runs the
workflow itself through Snakemake in ``OUT/.tumorseg/`` (the same preprocessing, prediction,
export and native-grid checks, the same logs), and copies each segmentation into ``OUT``
under the input's naming. Cases with a reference are scored too (``OUT/metrics.tsv``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from tumorseg.bundle.settings import open_bundle, same_classes
from tumorseg.errors import InputError
from tumorseg.io.layouts import Layout, image_suffix, scan_folder
from tumorseg.io.sheet import SAFE_ID
from tumorseg.io.tables import write_tsv
from tumorseg.tasks.labels import PRESETS, spec_from_config

WORK = ".tumorseg"  # the workflow's folder inside OUT: sheet, config, results, logs
#: a case's segmentation in OUT, by the input's layout (``{case}``: its ID)
OUT_NAMES = {"brats2023": "{case}-seg.nii.gz", "decathlon": "{case}.nii.gz"}
DEFAULT_OUT = "{case}_seg.nii.gz"


def repo_snakefile() -> Path:
    """The Snakefile of the checkout this package is installed from (``pip install -e``)."""
    return Path(__file__).resolve().parents[3] / "Snakefile"


def _files_case(files: list[Path], data: dict, case: str | None) -> tuple[pd.DataFrame, None]:
    """The one-row sheet of a case given as files: one per modality, or one 4D file."""
    modalities = data["config"]["modalities"]
    if data["input"] == "stack":
        raise InputError("the model takes slice stacks: give the case's folder", path=files[0])
    stem = files[0].name[: -len(image_suffix(files[0].name) or files[0].suffix)]
    if case is None:
        case = re.sub(rf"[_-]{re.escape(modalities[0])}$", "", stem, flags=re.I)
        case = re.sub(r"[^A-Za-z0-9_-]", "_", case) or "case"
    if not SAFE_ID.match(case):
        raise InputError(f"--case {case!r}: use letters, digits, '_' and '-' only")
    reference = {"seg": "", **({_target(data): ""} if _target(data) else {})}
    if len(files) == 1 and len(modalities) > 1:
        return pd.DataFrame([{"case": case, "image": str(files[0]), **reference}]), None
    if len(files) != len(modalities):
        raise InputError(
            f"{len(files)} files given, but the model takes {len(modalities)} modalities "
            f"({', '.join(modalities)}): give one file each, in that order, or one 4D file"
        )
    row = {"case": case, **{m: str(f) for m, f in zip(modalities, files, strict=True)}}
    return pd.DataFrame([{**row, **reference}]), None


def _target(data: dict) -> str | None:
    """A translation model's target modality (each case's reference), else None."""
    config = data["config"]
    return config["translation"]["target"] if config["task"] == "translation" else None


def input_sheet(inputs: list[Path], data: dict, case: str | None) -> tuple[pd.DataFrame, Layout]:
    """The sheet (absolute paths) of the input and its layout (None for files)."""
    missing = [p for p in inputs if not p.exists()]
    if missing:
        raise InputError("no such file or folder", path=missing[0])
    if len(inputs) > 1 or inputs[0].is_file():
        return _files_case(inputs, data, case)
    scan = _scan(inputs[0], data)
    stack = scan.layout.name == "lgg"
    if stack != (data["input"] == "stack"):
        kinds = {True: "slice stacks (folders of 2D slices)", False: "volumes"}
        raise InputError(
            f"the model was trained on {kinds[data['input'] == 'stack']}; the folder holds "
            f"{kinds[stack]} ({scan.layout.title})",
            path=inputs[0],
        )
    return scan.table, scan.layout


def _scan(folder: Path, data: dict):
    """The folder's layout and cases, with the model's modalities; for translation also its
    target, the reference of each case (without one in every case: predicted, not scored)."""
    modalities = data["config"]["modalities"]
    target = _target(data)
    if target:
        try:
            return scan_folder(folder, [*modalities, target])
        except InputError:
            scan = _scan(folder, {**data, "config": {**data["config"], "task": "segmentation"}})
            scan.table[target] = ""
            return scan
    try:
        return scan_folder(folder, modalities)
    except InputError as err:
        raise InputError(f"{err} (the model takes {', '.join(modalities)})", path=folder) from None


def label_convention(data: dict, layout: Layout | None) -> str | None:
    """The layout's label convention where it has the bundle's classes and regions under
    other values (predictions are then written in the data's values), else None."""
    theirs = spec_from_config({"label_convention": "brats2017", **data["config"]})
    mine = None if layout is None else layout.label_convention
    if mine is None or mine == theirs["convention"] or mine not in PRESETS:
        return None
    return mine if same_classes(spec_from_config({"label_convention": mine}), theirs) else None


def run_config(work: Path, name: str, folder: Path, convention: str | None, args) -> dict:
    """The workflow config that applies bundle ``folder`` as model ``name`` to the sheet."""
    config = {
        "demo": {"enabled": False},
        "samples": str(work / "samples.tsv"),
        "models": {name: {}},
        "pretrained": {name: str(folder)},
        "split": {"ratios": {"train": 0.0, "val": 0.0, "test": 1.0}},
        "predict": {"tta": args.tta, "uncertainty": args.uncertainty},
    }
    if convention:
        config["label_convention"] = convention
    return config


def targets(data: dict, name: str, sheet: pd.DataFrame) -> list[str]:
    """The workflow's files this command asks for: every prediction, and the per-case
    metrics when a case has a reference."""
    pred = outputs_of(data, name)
    wanted = [pred.format(case=c) for c in sheet["case"]]
    reference = sheet.get(_target(data) or "seg", pd.Series(dtype=str)).fillna("")
    if (reference != "").any():
        wanted.append(f"results/metrics/{name}/per_case.tsv")
    return wanted


def outputs_of(data: dict, name: str) -> str:
    """The workflow's prediction path of a case (``{case}`` left to fill)."""
    if _target(data):
        return f"results/predictions/{name}/{{case}}_{_target(data)}.nii.gz"
    if data["input"] == "stack":
        return f"results/predictions/{name}/{{case}}"
    return f"results/predictions/{name}/{{case}}_seg.nii.gz"


def snakemake_command(work: Path, args, wanted: list[str]) -> list[str]:
    # the targets first: --resources takes several values
    cmd = [sys.executable, "-m", "snakemake", *wanted, "--snakefile", str(args.snakefile)]
    cmd += ["--directory", str(work), "--configfile", str(work / "config.yaml")]
    cmd += ["--cores", str(args.cores)]
    cmd += ["--profile", _profile(args.profile)] if args.profile else ["--resources", "gpu=1"]
    return [*cmd, *args.snakemake_args]


def copy_out(work: Path, out: Path, data: dict, name: str, sheet, layout) -> list[Path]:
    """Each case's prediction copied into ``out`` under the input's naming."""
    pred = outputs_of(data, name)
    pattern = OUT_NAMES.get(layout.name if layout else "", DEFAULT_OUT)
    if data["config"]["task"] == "translation":
        pattern = Path(pred).name
    written = []
    for case in sheet["case"]:
        src = work / pred.format(case=case)
        dest = out / (case if src.is_dir() else pattern.format(case=case))
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        if src.is_dir():
            shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(".*"))  # Snakemake's stamp
        else:
            shutil.copy2(src, tmp)
        if dest.is_dir():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        written.append(dest)
    metrics = work / f"results/metrics/{name}/per_case.tsv"
    if metrics.is_file():
        shutil.copy2(metrics, out / "metrics.tsv")
    return written


def _profile(profile: str | None) -> str | None:
    """A profile folder given by path, made absolute (Snakemake runs in OUT/.tumorseg)."""
    return str(Path(profile).resolve()) if profile and Path(profile).exists() else profile


def predict_folder(args) -> int:
    out = Path(args.output).resolve()
    inside = [p for p in args.input if Path(p).is_dir() and out.is_relative_to(Path(p).resolve())]
    if inside:
        raise InputError(
            "the output folder lies inside the input folder; choose another", inside[0]
        )
    work = out / WORK
    work.mkdir(parents=True, exist_ok=True)
    folder, data = open_bundle(args.model, work / "bundles")
    name = data["model"]["name"]
    sheet, layout = input_sheet([Path(p).resolve() for p in args.input], data, args.case)
    write_tsv(sheet, work / "samples.tsv", na_rep="")
    config = run_config(work, name, folder.resolve(), label_convention(data, layout), args)
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    wanted = targets(data, name, sheet)
    cmd = snakemake_command(work, args, wanted)
    print(f"tumorseg-predict: {len(sheet)} cases, model {name} ({folder}); workflow in {work}")
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        print(f"error: the workflow failed; its logs are in {work / 'logs'}", file=sys.stderr)
        return proc.returncode
    if args.snakemake_args and any(a in ("-n", "--dry-run") for a in args.snakemake_args):
        return 0
    written = copy_out(work, out, data, name, sheet, layout)
    print(f"wrote {len(written)} segmentations to {out}")
    if (out / "metrics.tsv").is_file():
        print(f"scored the cases with a reference: {out / 'metrics.tsv'}")
    return 0


def parser():
    import argparse

    ap = argparse.ArgumentParser(
        prog="tumorseg-predict",
        description="Segment new patients with a trained model bundle: writes the sheet, runs "
        "the workflow's preprocessing, prediction and export (Snakemake) in OUT/.tumorseg, and "
        "puts each case's native-space segmentation in OUT under the input's naming.",
    )
    ap.add_argument(
        "-i", "--input", action="append", required=True,
        help="a dataset folder (any layout tumorseg-sheet recognises), or one case's files: "
        "one per modality in the model's order, or one 4D file (repeat -i)",
    )  # fmt: skip
    ap.add_argument("-o", "--output", required=True, help="folder for the segmentations")
    ap.add_argument("-m", "--model", required=True, help="model bundle: folder or .zip archive")
    ap.add_argument("--case", help="case ID for files given with -i (default: from the name)")
    ap.add_argument("--cores", default="all", help="cores (default: all)")
    ap.add_argument("--profile", help="a Snakemake profile (cluster submission)")
    ap.add_argument("--tta", choices=("none", "mirror"), default="none", help="test-time mirroring")
    ap.add_argument("--uncertainty", action="store_true", help="entropy maps (needs --tta mirror)")
    ap.add_argument("--snakefile", type=Path, default=repo_snakefile(), help=argparse.SUPPRESS)
    ap.add_argument("snakemake_args", nargs="*", help="further Snakemake arguments, after --")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.snakefile.is_file():
        print(
            f"error: the workflow's Snakefile is not at {args.snakefile}: install tumorseg "
            "from its checkout (pip install -e .)",
            file=sys.stderr,
        )
        return 1
    if args.uncertainty and args.tta != "mirror":
        print("error: --uncertainty needs --tta mirror (several predictions)", file=sys.stderr)
        return 1
    try:
        return predict_folder(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
