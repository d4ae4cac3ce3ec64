"""Preprocessing one BraTS-size case against merely reading its five files.

Target (issue 3): preprocessing takes at most 2x the time to read the five files with
SimpleITK. Both are timed in this process, interleaved, and the medians are compared.

Usage: python benchmarks/bench_preprocess.py [CASE_DIR] [--repeats N] [--threads T]
CASE_DIR defaults to the first real case in ../shared/data/real (a demo case otherwise).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import SimpleITK as sitk  # noqa: E402
from synth import preprocess  # noqa: E402

MODS = ["flair", "t1", "t1ce", "t2"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "case_dir", nargs="?", default=str(ROOT.parent / "shared/data/real/TCGA-FG-6692")
    )
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2, help="threads of the preprocess job")
    args = ap.parse_args()
    case_dir = Path(args.case_dir)
    case = case_dir.name
    files = {m: str(case_dir / f"{case}_{m}.nii.gz") for m in [*MODS, "seg"]}
    missing = [f for f in files.values() if not Path(f).is_file()]
    if missing:
        sys.exit(f"missing files: {missing}")

    reads, preps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats + 1):
            t0 = time.perf_counter()
            for f in files.values():
                sitk.ReadImage(f)
            t1 = time.perf_counter()
            preprocess(case, files, tmp, threads=args.threads)
            t2 = time.perf_counter()
            if i:  # the first round warms the page cache
                reads.append(t1 - t0)
                preps.append(t2 - t1)
    read = statistics.median(reads)
    prep = statistics.median(preps)
    print(f"case: {case} ({args.repeats} rounds, median; preprocess threads={args.threads})")
    print(f"read five files with SimpleITK: {read:.3f} s")
    print(f"preprocess (read + canonical + crop + downsample + normalise + write): {prep:.3f} s")
    print(f"ratio preprocess / read: {prep / read:.2f} (target <= 2.0)")


if __name__ == "__main__":
    main()
