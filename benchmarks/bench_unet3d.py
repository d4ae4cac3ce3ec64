"""3D U-Net on CPU: training patches per second, peak memory, and seconds per case of
sliding-window inference.

Writes ``--cases`` synthetic cases of the preprocessing contract's shape (77 x 96 x 96 x 4,
a tumour blob in each) to a temporary folder, builds the 3D U-Net of
``config/compare.yaml`` (depth 3, 8 base filters, 64 x 64 x 16 patches, batch 2, soft Dice)
and trains it through the workflow's own patch pipeline (tumour-fraction sampling, paired
3D augmentation, prefetching): patches per second over ``--steps`` timed steps after
``--warmup``, ``--repeats`` times. Peak memory is the process's maximum resident set size
(``ru_maxrss``) after training, printed beside the estimate the workflow gives the job.
Inference: :func:`tumorseg.inference.predict.predict_probabilities` on one whole volume (sliding
windows, overlap 0.5, Gaussian weighting), median seconds of ``--repeats``.

Usage: PYTHONPATH=src python benchmarks/bench_unet3d.py [--threads 2] [--steps 10]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from training_fixtures import model_defaults  # noqa: E402

from tumorseg.inference.predict import predict_probabilities  # noqa: E402
from tumorseg.training import patches  # noqa: E402
from tumorseg.training.assemble import build, compiled_model  # noqa: E402
from tumorseg.training.memory import estimate_mem_mb  # noqa: E402
from tumorseg.training.setup import configure_tensorflow  # noqa: E402

SHAPE = (77, 96, 96, 4)


def write_cases(folder: Path, n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*(np.arange(s) for s in SHAPE[:3]), indexing="ij")
    cases = []
    for i in range(n):
        centre = rng.uniform([25, 30, 30], [50, 66, 66])
        r = np.sqrt(((zz - centre[0]) * 2) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
        label = np.select([r < 6, r < 10, r < 16], [1, 3, 2], 0).astype(np.uint8)
        image = rng.normal(size=SHAPE).astype(np.float32) + label[..., None]
        out = folder / f"c{i}"
        out.mkdir()
        np.save(out / "image.npy", image.astype(np.float16), allow_pickle=False)
        np.save(out / "label.npy", label, allow_pickle=False)
        cases.append(out.name)
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    configure_tensorflow(args.threads)
    settings = model_defaults() | {
        "architecture": "unet3d", "depth": 3, "base_filters": 8, "patch_size": [64, 64, 16],
        "batch_size": 2, "loss": "dice", "seed": 1,
    }  # fmt: skip
    batch = settings["batch_size"]
    with tempfile.TemporaryDirectory() as tmp:
        cases = write_cases(Path(tmp), args.cases)
        reader = patches.PatchReader(tmp, cases, 4, settings["patch_size"])
        sampler = patches.PatchSampler(reader, settings["patch_size"], seed=1)
        model = compiled_model(settings, 4, (16, 64, 64), 1000, None, "brats2017")
        rates = []
        for r in range(args.repeats):
            steps = args.warmup + args.steps
            ds = iter(patches.make_patch_train_dataset(
                reader, sampler, {**settings, "seed": r}, steps, 1, threads=args.threads
            ))  # fmt: skip
            for _ in range(args.warmup):
                model.train_on_batch(*next(ds))
            t0 = time.perf_counter()
            for _ in range(args.steps):
                model.train_on_batch(*next(ds))
            rates.append(args.steps * batch / (time.perf_counter() - t0))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"3D training: median {statistics.median(rates):.2f}, best {max(rates):.2f} "
            f"patches/s ({args.repeats} x {args.steps} steps of {batch}, 64x64x16x4); "
            f"peak RSS {peak:.0f} MB, the job's estimate {estimate_mem_mb(settings, 4, 4)} MB; "
            f"patch sampling {sampler.stats}"
        )
        clean = build(settings, 4, (16, 64, 64), "brats2017")
        image = np.load(Path(tmp) / cases[0] / "image.npy", allow_pickle=False)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            probs = predict_probabilities(clean, image, 32, {"overlap": 0.5, "gaussian": True})
            times.append(time.perf_counter() - t0)
        print(
            f"sliding-window inference: {statistics.median(times):.2f} s per case "
            f"(77x96x96, overlap 0.5, Gaussian; output {probs.shape})"
        )


if __name__ == "__main__":
    main()
