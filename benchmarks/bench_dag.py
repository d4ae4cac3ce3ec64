"""`snakemake -n` on a sample sheet of many cases (targets: 2,000 under 20 s, 10,000 under
60 s).

Writes a 2,000-case sheet of placeholder files (the start-up checks need the files to
exist; no job runs in a dry run) in a temporary copy of the workflow and times the dry
run, start-up validation of config and sheet included.

Usage: python benchmarks/bench_dag.py [--cases N [N ...]]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from workflow_helpers import make_workdir, snakemake_bin  # noqa: E402

MODS = ["flair", "t1", "t1ce", "t2"]


def write_sheet(wd: Path, n_cases: int, batches: int | None) -> str:
    """A sheet of ``n_cases`` cases of empty placeholder files; returns its config file."""
    data = wd / "data"
    rows = ["case\tsubject\tscanner\t" + "\t".join(MODS) + "\tseg"]
    for i in range(n_cases):
        case = f"site{i % 7}_sub{i // 2:05d}_ses{i % 2}"
        folder = data / case
        folder.mkdir(parents=True)
        files = []
        for mod in [*MODS, "seg"]:
            (folder / f"{case}_{mod}.nii.gz").touch()
            files.append(f"{case}/{case}_{mod}.nii.gz")
        seg = files[-1] if i % 10 else ""  # every tenth case unlabelled
        rows.append(f"{case}\tsub{i // 2:05d}\tsite{i % 7}\t" + "\t".join(files[:-1]) + f"\t{seg}")
    (data / "samples.tsv").write_text("\n".join(rows) + "\n")
    extra = f"predict: {{batches: {batches}}}\n" if batches else ""
    (wd / "big.yaml").write_text("demo: {enabled: false}\nsamples: data/samples.tsv\n" + extra)
    return "big.yaml"


def dry_run(n_cases: int, batches: int | None, profile_to: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wd = make_workdir(Path(tmp) / "wf")
        config = write_sheet(wd, n_cases, batches)
        cmd = [snakemake_bin(), "-n", "--quiet", "rules", "--cores", "8"]
        cmd += ["--resources", "gpu=1", "--configfile", config]
        if profile_to:
            cmd = [sys.executable, "-m", "cProfile", "-o", profile_to, *cmd]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=wd, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        total = [ln for ln in proc.stdout.splitlines() if ln.startswith("total")]
        target = 20 if n_cases <= 2000 else 60
        print(
            f"snakemake -n on {n_cases} cases ({batches or 'default'} batches): "
            f"{elapsed:.1f} s (target < {target} s); "
            f"jobs planned: {total[0].split()[-1] if total else '?'}; "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--batches", type=int, help="predict.batches (default: the config's)")
    ap.add_argument("--profile-to", help="write a cProfile of the (last) dry run here")
    args = ap.parse_args()
    for n in args.cases:
        dry_run(n, args.batches, args.profile_to)


if __name__ == "__main__":
    main()
