"""Run the workflow for real in a temporary copy of the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ["Snakefile", "workflow", "config", "envs", "profiles", "src", "tests/config"]


def snakemake_bin() -> str:
    exe = Path(sys.executable).with_name("snakemake")
    return str(exe) if exe.exists() else "snakemake"


def make_workdir(dest: Path) -> Path:
    """A fresh copy of the workflow (no results), as a user's clone would be."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        src = ROOT / name
        target = dest / name
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def run_snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: int = 1800, env: dict | None = None
):
    """Run snakemake in ``workdir`` (``env``: variables to add); returns the
    CompletedProcess (output captured)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    cmd = [snakemake_bin(), "--cores", "2", "--resources", "gpu=1", *args]
    proc = subprocess.run(
        cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Jobs a dry run would execute, by rule (empty when nothing would run); batch jobs
    are counted under their step (``predict``, ``evaluate``, ``ceiling``, ``qc``)."""
    proc = run_snakemake(workdir, "-n", "--quiet", "rules", *args)
    jobs: dict[str, int] = {}
    lines = (proc.stdout + proc.stderr).splitlines()
    started = False
    for line in lines:
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            started = True
            continue
        if started and len(parts) == 2 and parts[1].isdigit():
            if parts[0] != "total":
                batch = BATCH_RULE.fullmatch(parts[0])
                step = batch.group(1) if batch else parts[0]
                jobs[step] = jobs.get(step, 0) + int(parts[1])
    return jobs


def copy_workdir(src: Path, dest: Path) -> Path:
    """A copy of a workdir that ran (outputs, mtimes and .snakemake metadata kept)."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def write_config(workdir: Path, name: str, data: dict) -> str:
    """Write an extra config file into ``workdir``; returns its path relative to it."""
    import yaml

    path = workdir / "tests" / "config" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path.relative_to(workdir))


BATCH_RULE = re.compile(r"(predict|postprocess|evaluate|ceiling|qc)_(?:\w+_)?b(\d+)")
BATCH_LOG = re.compile(r"logs/(?:predict|evaluate|ceiling|qc)/(?:([^/]+)/)?batch(\d+)\.log")


def jobs_in_log(text: str, header: str = r"(?:local)?rule") -> list[tuple[str, dict[str, str]]]:
    """``(rule, wildcards)`` of the job blocks in Snakemake output whose header line matches
    ``header`` followed by `` <rule>:`` (``localrule`` blocks are jobs actually executed).
    A batch job (rule ``predict_<run>_b<k>``, ``evaluate_<run>_b<k>``, ``ceiling_b<k>``,
    ``qc_b<k>``) is reported under its step's name, with its run and batch as wildcards
    ``model`` and ``batch`` (read from its log path)."""
    jobs: list[tuple[str, dict[str, str]]] = []
    inside = False
    for line in text.splitlines():
        stripped = line.strip()
        match = re.fullmatch(rf"{header} (\w+):", stripped)
        if match:
            batch = BATCH_RULE.fullmatch(match.group(1))
            jobs.append((batch.group(1) if batch else match.group(1), {}))
            inside = True
        elif re.fullmatch(r"(?:local)?(?:rule|checkpoint) \w+:", stripped):
            inside = False
        elif inside and stripped.startswith("wildcards: "):
            for item in stripped[len("wildcards: ") :].split(", "):
                key, _, value = item.partition("=")
                jobs[-1][1][key] = value
        elif inside and stripped.startswith("log: ") and BATCH_LOG.search(stripped):
            run, batch = BATCH_LOG.search(stripped).groups()
            jobs[-1][1].update({"batch": batch, **({"model": run} if run else {})})
    return jobs


def planned_job_details(workdir: Path, *args: str) -> list[tuple[str, dict[str, str]]]:
    """Jobs a dry run would execute, as ``(rule, wildcards)`` pairs (empty when nothing)."""
    proc = run_snakemake(workdir, "-n", *args)
    return jobs_in_log(proc.stdout + proc.stderr)


def assert_same_results(a: Path, b: Path) -> None:
    """Two runs of the same config agree: splits and preprocessed arrays bit for bit, the
    predicted label maps voxel for voxel, the per-case metrics exactly, and the model cards'
    digests, case counts and metrics."""
    import nibabel as nib
    import numpy as np
    import pandas as pd

    assert (a / "results/splits/splits.tsv").read_bytes() == (
        b / "results/splits/splits.tsv"
    ).read_bytes(), "splits.tsv differs"
    arrays = sorted(p.relative_to(a) for p in (a / "results/preprocessed").glob("*/*.npy"))
    assert arrays, f"no preprocessed arrays under {a}"
    assert arrays == sorted(p.relative_to(b) for p in (b / "results/preprocessed").glob("*/*.npy"))
    for rel in arrays:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs"
    preds = sorted(p.relative_to(a) for p in (a / "results/predictions").glob("*/*_seg.nii.gz"))
    assert preds, f"no predictions under {a}"
    for rel in preds:
        left = np.asarray(nib.load(a / rel).dataobj)
        right = np.asarray(nib.load(b / rel).dataobj)
        assert np.array_equal(left, right), f"{rel} differs"
    tables = sorted(p.relative_to(a) for p in (a / "results/metrics").glob("*/per_case.tsv"))
    assert tables, f"no per_case.tsv under {a}"
    for rel in tables:
        pd.testing.assert_frame_equal(
            pd.read_csv(a / rel, sep="\t"), pd.read_csv(b / rel, sep="\t"), check_exact=True
        )
    import json

    for bundle in sorted(a.glob("results/models/*/bundle.json")):
        cards = [json.loads((r / bundle.relative_to(a)).read_text())["card"] for r in (a, b)]
        for key in ("config_sha256", "sheet_sha256", "data_sha256", "cases", "metrics"):
            assert cards[0][key] == cards[1][key], f"{bundle.relative_to(a)}: card {key} differs"


def run_command(name: str, *args: str, check: bool = True, timeout: int = 1200):
    """Run one of the package's commands (``tumorseg-predict``, ``tumorseg-export``) on this
    checkout's code, as its console script does; returns the CompletedProcess."""
    module = {
        "tumorseg-predict": "tumorseg.bundle.predict_folder",
        "tumorseg-export": "tumorseg.bundle.archive",
    }[name]
    code = f"import sys; from {module} import main; sys.exit(main(sys.argv[1:]))"
    env = dict(
        os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-8000:]}")  # fmt: skip
    return proc


def shipped_config(**changes) -> dict:
    """``config/config.yaml`` with ``changes`` (top-level keys replaced) as the workflow
    holds it: the schema's defaults and the task's model defaults filled, the modalities of
    a BraTS sheet resolved (a bundle's ``bundle.json`` records such a config)."""
    import copy

    import yaml
    from snakemake.utils import validate

    from tumorseg.workflow_config import apply_task_defaults

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config.update(changes)
    given = copy.deepcopy(config)
    validate(config, str(ROOT / "workflow/schemas/config.schema.yaml"))
    apply_task_defaults(config, given)
    config["modalities"] = config["modalities"] or ["flair", "t1", "t1ce", "t2"]
    return config
