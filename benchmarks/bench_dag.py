"""`snakemake -n` on a sample sheet of 2,000 cases (target: under 20 s).

Writes a 2,000-case sheet of placeholder files (the start-up checks need the files to
exist; no job runs in a dry run) in a temporary copy of the workflow and times the dry
run, start-up validation of config and sheet included.

Usage: python benchmarks/bench_dag.py [--cases N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from workflow_helpers import make_workdir, snakemake_bin  # noqa: E402

MODS = ["flair", "t1", "t1ce", "t2"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--profile-to", help="write a cProfile of the dry run here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wd = make_workdir(Path(tmp) / "wf")
        data = wd / "data"
        rows = ["case\tsubject\tscanner\t" + "\t".join(MODS) + "\tseg"]
        for i in range(args.cases):
            case = f"site{i % 7}_sub{i // 2:05d}_ses{i % 2}"
            folder = data / case
            folder.mkdir(parents=True)
            files = []
            for mod in [*MODS, "seg"]:
                (folder / f"{case}_{mod}.nii.gz").touch()
                files.append(f"{case}/{case}_{mod}.nii.gz")
            seg = files[-1] if i % 10 else ""  # every tenth case unlabelled
            rows.append(
                f"{case}\tsub{i // 2:05d}\tsite{i % 7}\t" + "\t".join(files[:-1]) + f"\t{seg}"
            )
        (data / "samples.tsv").write_text("\n".join(rows) + "\n")
        (wd / "big.yaml").write_text("demo: {enabled: false}\nsamples: data/samples.tsv\n")
        cmd = [
            snakemake_bin(),
            "-n",
            "--quiet",
            "rules",
            "--cores",
            "8",
            "--resources",
            "gpu=1",
            "--configfile",
            "big.yaml",
        ]
        t0 = time.perf_counter()
        if args.profile_to:
            cmd = [sys.executable, "-m", "cProfile", "-o", args.profile_to, *cmd]
        proc = subprocess.run(cmd, cwd=wd, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        total = [ln for ln in proc.stdout.splitlines() if ln.startswith("total")]
        print(
            f"snakemake -n on {args.cases} cases: {elapsed:.1f} s (target < 20 s); "
            f"jobs planned: {total[0].split()[-1] if total else '?'}"
        )


if __name__ == "__main__":
    main()
