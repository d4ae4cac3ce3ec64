"""Image translation: training throughput and seconds per case of prediction.

Training: ~8 cases of the preprocessing contract's shape (77 x 96 x 96, one input channel,
a float16 ``target.npy``) written to a temporary folder; the default model of the schema
with ``loss: mae`` (the linear one-channel U-Net of ``config/translation.yaml``) trained
through the workflow's own pipeline (memory-mapped reads, paired bilinear augmentation of
input and target, prefetching), slices per second over ``--steps`` timed steps after
``--warmup``, repeated ``--repeats`` times (median and best printed).

Prediction: one demo case (BraTS grid) and one siteC case (1.2 mm RAS: resampled both ways)
preprocessed for translation, then ``predict_translation_case`` as the workflow's job runs
it, model loaded once; read, model, inversion (back to the native grid, brain mask from the
native input) and write seconds per case (median of ``--repeats``).

Usage: PYTHONPATH=src python benchmarks/bench_translation.py [--threads 2] [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from training_fixtures import model_defaults  # noqa: E402

from tumorseg.training import data  # noqa: E402
from tumorseg.training.assemble import compiled_model  # noqa: E402
from tumorseg.training.setup import configure_tensorflow  # noqa: E402


def write_cases(folder: Path, n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        case = f"c{i:02d}"
        out = folder / case
        out.mkdir(parents=True)
        image = rng.normal(size=(77, 96, 96, 1)).astype(np.float16)
        np.save(out / "image.npy", image, allow_pickle=False)
        np.save(out / "target.npy", (0.5 * image[..., 0] + 0.1).astype(np.float16))
        pd.DataFrame(
            {"case": case, "slice": range(77), "brain_voxels": 5000, "has_target": 1}
        ).to_csv(out / "slices.tsv", sep="\t", index=False)
        cases.append(case)
    return cases


def bench_training(args, settings) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cases = write_cases(Path(tmp), args.cases)
        slices = data.read_slices(tmp, cases, n_classes=0)
        reader = data.SliceReader(tmp, cases, n_classes=0)
        batch = int(settings["batch_size"])
        model = compiled_model(settings, 1, 96, 1000, None, None)
        rates = []
        for r in range(args.repeats):
            steps = args.warmup + args.steps
            ds = iter(data.make_train_dataset(reader, slices, {**settings, "seed": r}, steps, 1,
                                              threads=args.threads))  # fmt: skip
            for _ in range(args.warmup):
                model.train_on_batch(*next(ds))
            t0 = time.perf_counter()
            for _ in range(args.steps):
                model.train_on_batch(*next(ds))
            rates.append(args.steps * batch / (time.perf_counter() - t0))
        print(
            f"training (translation, real pipeline): median {statistics.median(rates):.1f}, "
            f"best {max(rates):.1f} slices/s over {args.repeats} x {args.steps} steps of "
            f"{batch}"
        )


def bench_prediction(args, settings) -> None:
    from synth import BRATS_GRID, preprocess, write_case

    from tumorseg.inference.predict import load_model
    from tumorseg.inference.synthesis import predict_translation_case
    from tumorseg.training.assemble import build

    ras = {"size": (200, 200, 130), "spacing": (1.2, 1.2, 1.2),
           "origin": (119.4, 119.4, -77.4), "direction": (-1, 0, 0, 0, -1, 0, 0, 0, 1)}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "unet.keras"
        build(settings, 1, 96, None).save(path)
        model = load_model(str(path))
        for name, grid in (("BraTS grid", BRATS_GRID), ("1.2 mm RAS", ras)):
            paths = write_case(tmp / "data", name.replace(" ", "_").replace(".", ""), grid)
            inputs = {"images": {"t1": paths["t1"]}, "image": None, "target": paths["t2"]}
            _, out = preprocess("c", paths, tmp / name, seg=None, modalities=["t1"],
                                image_channels=["t1"], target="t2", _inputs=inputs)  # fmt: skip
            runs = [
                predict_translation_case(
                    "c",
                    str(path),
                    out["image.npy"],
                    out["geometry.json"],
                    [paths["t1"]],
                    32,
                    str(tmp / f"{r}.nii.gz"),
                    model=model,
                )  # fmt: skip
                for r in range(args.repeats)
            ]
            parts = {k: statistics.median(t[k] for t in runs) for k in runs[0]}
            total = sum(parts.values())
            print(f"prediction, {name}: {total:.2f} s per case (" +
                  ", ".join(f"{k} {v:.2f}" for k, v in parts.items()) + ")")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    configure_tensorflow(args.threads)
    settings = {**model_defaults(ROOT / "workflow/schemas/config.schema.yaml"), "loss": "mae"}
    settings["lesion_sampling"] = False
    bench_training(args, settings)
    bench_prediction(args, settings)


if __name__ == "__main__":
    main()
