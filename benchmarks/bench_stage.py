"""The prediction stage as the workflow runs it (prediction + evaluation batch jobs) against
the pure work of the same cases, in one run.

Builds a workdir with ``--cases`` cases: five demo cases (BraTS layout and grid) written by
``tumorseg-demo-data``, preprocessed by the workflow, then repeated under new case IDs
(their files and preprocessed arrays copied, so that the untimed set-up stays short). The
model is a ``pretrained`` U-Net with random weights of ``--depth`` / ``--filters`` (default:
the tiny test model). Then

(a) stage: ``snakemake --cores C --resources gpu=1`` for every case's metrics (the batch
    jobs of predict and evaluate, process start-up, TensorFlow import and model load
    included; the ceilings are made beforehand, untimed), wall time per case;
(b) pure: in this process, the model loaded once and warmed up, ``predict_case`` (model,
    inversion, write) and ``evaluate_case`` (scoring) one after another on ``--pure``
    cases, seconds per case.

Target: (a) within 1.3x of (b). Also printed: each batch job's wall time from its
Snakemake benchmark file.

Usage: python benchmarks/bench_stage.py [--cases 25] [--cores 2] [--batches B]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from workflow_helpers import (  # noqa: E402
    make_workdir,
    shipped_config,
    snakemake_bin,
    write_config,
)

MODS = ["flair", "t1", "t1ce", "t2"]
BASE = 5


def snakemake(wd: Path, cores: int, targets: list[str], *options: str) -> float:
    """Wall seconds of one Snakemake run (targets first: options such as --configfile
    take every argument after them)."""
    cmd = [snakemake_bin(), *targets, "--cores", str(cores), "--resources", "gpu=1", *options]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(" ".join(map(str, cmd)) + "\n" + proc.stdout[-3000:] + proc.stderr[-2000:])
    return time.perf_counter() - t0


def write_sheet(wd: Path, cases: dict[str, str]) -> None:
    """The sample sheet: case ID -> the demo case whose files it uses."""
    rows = ["case\tsubject\tscanner\t" + "\t".join(MODS) + "\tseg"]
    sites = {b: f"site{i % 3}" for i, b in enumerate(sorted(set(cases.values())))}
    for case, base in cases.items():
        files = [f"data/{base}/{base}_{m}.nii.gz" for m in [*MODS, "seg"]]
        rows.append(f"{case}\t{case}\t{sites[base]}\t" + "\t".join(files))
    (wd / "samples.tsv").write_text("\n".join(rows) + "\n")


def write_bundle(folder: Path, settings: dict) -> None:
    """The random model's bundle.json: the shipped config's preprocessing, ``settings``."""
    from tumorseg.bundle.manifest import write_manifest

    write_manifest(folder, shipped_config(models={"unet": settings}), "unet")


def build(wd: Path, args) -> tuple[list[str], str]:
    subprocess.run(
        [Path(sys.executable).with_name("tumorseg-demo-data"), "brats2021", str(wd / "data")]
        + ["--subjects", str(BASE), "--unlabelled", "0", "--seed", "3"],
        check=True,
        capture_output=True,
    )
    base = sorted(p.name for p in (wd / "data").iterdir() if p.is_dir())[:BASE]
    from training_fixtures import model_defaults

    from tumorseg.training.models import build_model

    settings = model_defaults(ROOT / "workflow/schemas/config.schema.yaml")
    settings.update(depth=args.depth, base_filters=args.filters)
    (wd / "bundle").mkdir()
    build_model(settings, n_channels=4).save(wd / "bundle/model.keras")
    model = {k: v for k, v in settings.items() if k in ("architecture", "depth", "base_filters")}
    write_bundle(wd / "bundle", settings)
    predict = {"batches": args.batches} if args.batches else {}
    cfg = write_config(
        wd,
        "stage.yaml",
        {
            "demo": {"enabled": False},
            "samples": "samples.tsv",
            "models": {"unet": model},
            "pretrained": {"unet": "bundle"},
            "predict": predict,
        },
    )
    write_sheet(wd, {b: b for b in base})
    snakemake(wd, args.cores, ["results/preprocessed/summary.tsv"], "--configfile", cfg)
    cases = {f"case{i:04d}": base[i % BASE] for i in range(args.cases)}
    for case, b in cases.items():
        shutil.copytree(wd / "results/preprocessed" / b, wd / "results/preprocessed" / case)
    write_sheet(wd, cases)
    ceilings = [f"results/ceiling/{c}_seg.nii.gz" for c in cases]
    snakemake(wd, args.cores, ceilings, "--configfile", cfg, "--rerun-triggers", "mtime")
    return list(cases), cfg


def pure(wd: Path, cases: list[str], threads: int) -> list[dict[str, float]]:
    from tumorseg.evaluation.scoring import evaluate_case
    from tumorseg.inference.predict import configure_threads, load_model, predict_case

    configure_threads(threads)
    model = load_model(str(wd / "bundle/model.keras"))
    out = wd / "pure"
    out.mkdir()
    times = []
    rows = {r[0]: r for r in _rows(wd)}
    for i, case in enumerate([cases[0], *cases]):  # the first call traces the model
        row = rows[case]
        t0 = time.perf_counter()
        pre = wd / "results/preprocessed" / case
        parts = predict_case(
            case, "", str(pre / "image.npy"), str(pre / "geometry.json"), str(wd / row[3]),
            "brats2017", 32, str(out / f"{case}_seg.nii.gz"), model=model,
        )  # fmt: skip
        evaluate_case(
            case, str(out / f"{case}_seg.nii.gz"), str(wd / row[-1]),
            str(wd / f"results/ceiling/{case}_seg.nii.gz"), "brats2017", str(out / f"{case}.tsv"),
            lesion_wise="gli",  # the workflow's default for a BraTS map
        )  # fmt: skip
        if i:
            total = time.perf_counter() - t0
            times.append({**parts, "scoring": total - sum(parts.values()), "total": total})
    return times


def _rows(wd: Path) -> list[list[str]]:
    return [ln.split("\t") for ln in (wd / "samples.tsv").read_text().splitlines()[1:]]


def job_times(wd: Path, step: str) -> list[float]:
    files = sorted((wd / "results/benchmarks" / step).rglob("batch*.tsv"))
    return [float(f.read_text().splitlines()[1].split("\t")[0]) for f in files]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=25)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--batches", type=int, default=0, help="predict.batches (0: the default)")
    ap.add_argument("--pure", type=int, default=10, help="cases timed for (b)")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--filters", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wd = make_workdir(Path(tmp) / "wf")
        t0 = time.perf_counter()
        cases, cfg = build(wd, args)
        print(f"set-up of {len(cases)} cases (untimed): {time.perf_counter() - t0:.0f} s")
        targets = [f"results/metrics/unet/cases/{c}.tsv" for c in cases]
        stage = snakemake(wd, args.cores, targets, "--configfile", cfg, "--rerun-triggers", "mtime")
        per_job = {s: job_times(wd, s) for s in ("predict", "evaluate")}
        work = pure(wd, cases[: args.pure], min(args.cores, 2))
    load = os.getloadavg()[0]
    pure_case = statistics.mean(w["total"] for w in work)
    split = ", ".join(f"{k} {statistics.mean(w[k] for w in work):.2f} s" for k in work[0])
    print(f"{len(cases)} cases, --cores {args.cores}, load average {load:.1f}")
    for step, times in per_job.items():
        print(f"  {step}: {len(times)} batch jobs, " + ", ".join(f"{t:.1f} s" for t in times))
    print(
        f"(a) stage: {stage:.1f} s wall, {stage / len(cases):.2f} s per case; "
        f"(b) pure model + inversion + write + scoring: {pure_case:.2f} s per case "
        f"(mean of {len(work)}: {split}); ratio (a)/(b) {stage / len(cases) / pure_case:.2f} "
        "(target <= 1.3)"
    )


if __name__ == "__main__":
    main()
