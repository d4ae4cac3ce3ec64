"""Seconds per case of the scoring step's parts, on a finished run's predictions: the
voxel-wise metrics (Dice, ..., both HD95s), each HD95 alone, and the BraTS lesion-wise
metrics, as :func:`tumorseg.evaluation.scoring.evaluate_case` computes them.

    python benchmarks/bench_scoring.py --workdir . [--model unet] [--repeats 3]

The workdir is a finished run of the demo (or any BraTS-map run): predictions under
``results/predictions/{model}/`` and the sample sheet ``results/samples.tsv``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _cases(workdir: Path, model: str) -> list[tuple[str, Path, Path]]:
    import pandas as pd

    sheet = pd.read_csv(workdir / "results/samples.tsv", sep="\t", dtype={"case": str})
    out = []
    for row in sheet[sheet["labelled"]].itertuples():
        pred = workdir / f"results/predictions/{model}/{row.case}_seg.nii.gz"
        # a sheet's label column, or the demo's layout (its sheet holds no paths)
        label = getattr(row, "label", None) or f"resources/demo/{row.case}/{row.case}_seg.nii.gz"
        if pred.exists():
            out.append((row.case, pred, workdir / label))
    return out


def _timed(repeats: int, fn, *args) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    import numpy as np
    import SimpleITK as sitk

    from tumorseg.evaluation import segmentation as seg
    from tumorseg.evaluation.lesions import lesion_table
    from tumorseg.tasks.labels import as_label_map

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT)
    parser.add_argument("--model", default="unet")
    parser.add_argument("--labels", default="brats2017")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    labels = as_label_map(args.labels)
    parts = {k: [] for k in ("voxel-wise (all)", "hd95_pooled", "hd95_directed", "lesion-wise")}
    cases = _cases(args.workdir, args.model)
    if not cases:
        raise SystemExit(f"no scored predictions under {args.workdir}/results/predictions")
    for _case, pred_path, ref_path in cases:
        ref_image = sitk.ReadImage(str(ref_path))
        pred = labels.to_internal(sitk.GetArrayFromImage(sitk.ReadImage(str(pred_path))))
        ref = labels.to_internal(sitk.GetArrayFromImage(ref_image))
        spacing = tuple(reversed(ref_image.GetSpacing()))
        wt = labels.regions["WT"]
        p, r = np.isin(pred, wt), np.isin(ref, wt)
        n = args.repeats
        parts["voxel-wise (all)"].append(_timed(n, seg.case_metrics, pred, ref, spacing, labels))
        for name in ("hd95_pooled", "hd95_directed"):
            parts[name].append(_timed(n, getattr(seg, name), p, r, spacing))
        parts["lesion-wise"].append(_timed(n, lesion_table, pred, ref, spacing, labels, "gli"))
    print(f"{len(cases)} cases of {args.workdir} ({args.model}), best of {args.repeats}, s/case")
    for name, values in parts.items():
        scope = "WT only" if name.startswith("hd95") else "3 regions"
        print(
            f"  {name:18s} {scope:9s} median {statistics.median(values):.3f}  "
            f"max {max(values):.3f}  total {sum(values):.2f}"
        )


if __name__ == "__main__":
    main()
