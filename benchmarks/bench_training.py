"""Training throughput: the real input pipeline against cached in-memory tensors.

Writes ~10 synthetic cases of the real shape (77 x 96 x 96 x 4, the preprocessing
contract) to a temporary folder, builds the default model (schema defaults, plus any
``--set key=value`` overrides) and measures training slices per second

(a) with the real pipeline: memory-mapped per-case files, lesion-weighted sampling,
    parallel reads, augmentation on the batch, prefetching;
(b) with the same model fed cached in-memory tensors
    (``tf.data.Dataset.from_tensor_slices(...).repeat().batch()``), no augmentation.

The two are measured alternately (a, b, a, b, ...) in one process; the median and the
best rates are compared (the best is the one least disturbed by other load on a shared
machine), and so is the process CPU time per slice; the ratio a / b should be 0.9 or
better. Also printed: the model's forward FLOPs per slice (counted analytically from the
layers) and the achieved GFLOP/s taking a training step as 3x the forward FLOPs (forward +
backward), plus the validation (inference) rate and the time one epoch of
``--epoch-slices`` slices would take.

Usage: PYTHONPATH=src python benchmarks/bench_training.py [--threads 2] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from training_fixtures import model_defaults, write_synthetic_cases  # noqa: E402

from tumorseg import data  # noqa: E402
from tumorseg.train import compiled_model, configure_tensorflow  # noqa: E402


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per measurement")
    parser.add_argument("--repeats", type=int, default=4, help="measurements of each kind")
    parser.add_argument("--epoch-slices", type=int, default=1300)
    parser.add_argument("--val-slices", type=int, default=250)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="model setting"
    )
    args = parser.parse_args()

    settings = model_defaults(ROOT / "workflow" / "schemas" / "config.schema.yaml")
    for item in args.set:
        key, value = item.split("=", 1)
        settings[key] = parse_value(value)
    configure_tensorflow(args.threads)
    import keras
    import tensorflow as tf

    from tumorseg.models import forward_flops

    keras.utils.set_random_seed(int(settings["seed"]))
    batch = int(settings["batch_size"])
    n_steps = args.warmup + args.steps

    with tempfile.TemporaryDirectory() as tmp:
        n_val = max(1, args.cases // 5)
        cases = {f"case{i:03d}": "val" if i < n_val else "train" for i in range(args.cases)}
        t = time.perf_counter()
        splits = write_synthetic_cases(tmp, cases, depth=77, size=96, channels=4, seed=1)
        print(f"wrote {args.cases} synthetic cases in {time.perf_counter() - t:.1f} s")
        train_cases, val_cases = data.read_split(splits)
        slices = data.read_slices(tmp, train_cases)
        val_slices = data.read_slices(tmp, val_cases)
        reader = data.SliceReader(tmp, train_cases)
        val_reader = data.SliceReader(tmp, val_cases)
        size, channels = reader.height, reader.channels

        model = compiled_model(settings, channels, size, 1000 * n_steps, mixed=False)
        flops = forward_flops(model)

        # (b) cached tensors: the first slices, read once, one-hot labels, no augmentation
        n_cache = min(len(slices), 8 * batch)
        images, labels = reader.read(
            slices["case_index"].to_numpy()[:n_cache], slices["slice"].to_numpy()[:n_cache]
        )
        onehot = np.eye(4, dtype=np.float32)[labels]
        cached = (
            tf.data.Dataset.from_tensor_slices((images, onehot))
            .repeat()
            .batch(batch, drop_remainder=True)
        )

        class Timer(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                self.times.append((time.perf_counter(), time.process_time()))

            def on_train_begin(self, logs=None):
                self.times = []

        def rate(dataset) -> tuple[float, float]:
            """Slices per second (wall clock) and CPU seconds per slice (all threads)."""
            timer = Timer()
            model.fit(dataset, epochs=1, steps_per_epoch=n_steps, callbacks=[timer], verbose=0)
            (w0, c0), (w1, c1) = timer.times[args.warmup - 1], timer.times[-1]
            n = args.steps * batch
            return n / (w1 - w0), (c1 - c0) / n

        def pipeline(epoch: int):
            # one fresh epoch of the real pipeline, as a (resumed) training run builds it
            return data.make_train_dataset(
                reader, slices, settings, n_steps, epoch + 1, epoch, args.threads
            )

        t = time.perf_counter()
        for _ in pipeline(0):
            pass
        alone = n_steps * batch / (time.perf_counter() - t)
        print(f"input pipeline alone (no model): {alone:.0f} slices/s")

        # warm-up: trace the training function for each input kind
        rate(cached.take(n_steps))
        rate(pipeline(0))
        results = {"pipeline": [], "cached": []}
        for r in range(args.repeats):
            results["pipeline"].append(rate(pipeline(r + 1)))
            results["cached"].append(rate(cached.take(n_steps)))
        for kind, values in results.items():
            print(f"{kind:>9}: " + ", ".join(f"{v[0]:.2f}" for v in values) + " slices/s; ", end="")
            print(", ".join(f"{v[1] * 1000:.1f}" for v in values) + " CPU ms/slice")
        a = statistics.median(v[0] for v in results["pipeline"])
        b = statistics.median(v[0] for v in results["cached"])
        a_best = max(v[0] for v in results["pipeline"])
        b_best = max(v[0] for v in results["cached"])
        a_cpu = statistics.median(v[1] for v in results["pipeline"])
        b_cpu = statistics.median(v[1] for v in results["cached"])

        val_ds = data.make_val_dataset(val_reader, val_slices, batch, args.threads)
        model.evaluate(val_ds, verbose=0)
        t = time.perf_counter()
        model.evaluate(val_ds, verbose=0)
        val_rate = len(val_slices) / (time.perf_counter() - t)

    print()
    print(f"model: {settings['architecture']} depth {settings['depth']} ", end="")
    print(f"base_filters {settings['base_filters']}, batch {batch}, {args.threads} threads")
    print("training, slices/s (median / best of the measurements):")
    print(f"  real pipeline + augmentation + lesion sampling: {a:.2f} / {a_best:.2f}")
    print(f"  cached in-memory tensors, no augmentation:      {b:.2f} / {b_best:.2f}")
    print(
        f"ratio pipeline / cached: {a / b:.3f} median, {a_best / b_best:.3f} best (target >= 0.9)"
    )
    print(
        f"CPU time per slice: {a_cpu * 1000:.1f} ms pipeline, {b_cpu * 1000:.1f} ms cached; "
        f"ratio cached / pipeline {b_cpu / a_cpu:.3f} (insensitive to other load on the machine)"
    )
    print(f"forward FLOPs per slice: {flops / 1e9:.3f} GFLOP (analytic, multiply-add = 2)")
    print(
        f"achieved: {3 * flops * a_best / 1e9:.1f} GFLOP/s at the best rate "
        "(training step = 3x forward FLOPs)"
    )
    print(f"validation (inference): {val_rate:.1f} slices/s")
    epoch_s = args.epoch_slices / a_best + args.val_slices / val_rate
    print(
        f"one epoch of {args.epoch_slices} training + {args.val_slices} validation slices: "
        f"{epoch_s:.0f} s; {settings['epochs']} epochs: {settings['epochs'] * epoch_s / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
