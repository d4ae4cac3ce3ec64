"""Training throughput of the workflow's training job, against this machine's matmul rate.

Writes ~10 synthetic cases of the real shape (77 x 96 x 96 x 4, the preprocessing
contract; ``--summary`` takes the slice size, channels and model settings of a trained
model instead) to a temporary folder and runs the training job itself,
``tumorseg.training.train.train_model`` as the workflow's ``train`` rule calls it (its thread
set-up, op determinism, datasets, per-epoch validation, checkpoints, TensorBoard scalars and
outputs), for ``--epochs`` epochs of ``--steps`` batches, in two kinds, alternately
(a, b, a, b, ...) in one process:

(a) the job as it is: memory-mapped per-case files, lesion-weighted sampling, parallel
    reads, augmentation, prefetching;
(b) the same job with its training dataset replaced by cached in-memory tensors
    (``tf.data.Dataset.from_tensor_slices(...).repeat().batch()``, no augmentation);
(c) the bare model: the model the job compiles (``compiled_model``: same loss, metrics,
    optimiser, schedule, precision and batch normalisation), in the same process with the
    same threads and op determinism, ``model.fit`` on the cached tensors of (b) with no
    callbacks of the job and no validation (one ``fit`` of ``--epochs`` epochs, timed by a
    callback with epoch hooks only; the first epoch, which traces, is left out). The job's
    rate (a) is printed as a ratio to it: the job should reach 0.9 of its own model.

The rates are the job's own: the per-epoch rate lines it writes to its log
(``tumorseg.training.epoch_rate.RATE_LINE``: training slices/s up to the validation, the CPU
cores the process used meanwhile, validation slices/s, the epoch with its checkpoint). The first
epoch of each run (tracing) is left out. Before each run, NumPy's float32 matmul
(2048 x 2048, best of 3) is timed with the job's thread count, so that the training
GFLOP/s (forward FLOPs from the job's ``summary.txt``; a training step = 3x forward) can be
set against what this machine computes at the moment: the ratio training / matmul should
be 0.45 or better, and the ratio (a) / (b) 0.9 or better. The machine's load average is
printed at the start and the end: another job on the same cores lowers both rates.

``--log logs/train/<model>.log`` also prints the rates of a workflow job from its log (with
``--summary results/models/<model>/summary.txt`` the benchmark trains that job's model on
slices of its size). ``--device gpu`` trains on the first GPU (stops with a message when
TensorFlow sees none) and sets the rate against TensorFlow's GPU matmul instead.
``--mixed`` trains as a job with ``mixed_precision: true`` does: float16 on a GPU, bfloat16
on a CPU with bfloat16 instructions (the reference stays NumPy's float32 matmul there: the
ratio then says how far the narrow type takes the job past float32's ceiling).

Usage: PYTHONPATH=src python benchmarks/bench_training.py [--threads 2] [--epochs 3]
       [--steps 12] [--repeats 2] [--log logs/train/unet.log] [--device gpu] [--mixed]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

#: the environment variables by which BLAS libraries and OpenMP take their thread count
BLAS_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
_KEEP = []  # threadpoolctl's limits, held for the whole run


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="the job's threads")
    parser.add_argument("--cases", type=int, default=10, help="synthetic cases (1 in 5 validate)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first untimed)")
    parser.add_argument("--steps", type=int, default=12, help="batches per epoch")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each kind")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--log", help="a training job's log: print its rates too")
    parser.add_argument("--summary", help="a trained model's summary.txt: train its model")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument(
        "--mixed",
        action="store_true",
        help="mixed_precision: true (float16 on a GPU, bfloat16 on a CPU that has it)",
    )
    parser.add_argument(
        "--keras-batch-norm",
        action="store_true",
        help="train with Keras's own batch normalisation instead of the fused kernel",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="model setting"
    )
    args = parser.parse_args()
    if args.mixed and args.device == "cpu":
        from tumorseg.training.precision import BF16_FLAGS, cpu_bf16_flags

        if not cpu_bf16_flags():
            parser.error(
                f"--mixed on the CPU needs bfloat16 instructions ({', '.join(BF16_FLAGS)}): "
                "without them the training job trains in float32"
            )
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch of each run is left out")
    return args


def limit_blas_threads(threads: int) -> str:
    """Hold NumPy's BLAS (the matmul reference) to the job's ``threads``: the environment
    variables, set before NumPy is imported, and threadpoolctl's limits when it is
    installed. Returns how, with the thread counts threadpoolctl reports."""
    if "numpy" in sys.modules:
        raise RuntimeError("NumPy was imported before its threads could be limited")
    for var in BLAS_THREAD_VARS:
        os.environ[var] = str(threads)
    how = f"{', '.join(BLAS_THREAD_VARS)} = {threads} set before NumPy's import"
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return how + " (threadpoolctl is not installed: not checked)"
    import numpy  # noqa: F401  (loads its BLAS, for threadpoolctl to see)

    _KEEP.append(threadpool_limits(limits=threads))
    pools = ", ".join(f"{p['internal_api']} {p['num_threads']}" for p in threadpool_info())
    return how + f"; threadpoolctl: {pools or 'no thread pool found'}"


def matmul_gflops(n: int, tries: int = 3) -> float:
    """NumPy float32 ``n x n`` matmul, GFLOP/s of the fastest of ``tries`` (2 n^3 FLOPs)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(tries):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def gpu_matmul_gflops(dtype: str, n: int = 8192, tries: int = 5) -> float:
    """TensorFlow's ``n x n`` matmul on the first GPU, GFLOP/s of the fastest of ``tries``
    (float32 runs as TF32 on GPUs that have it, TensorFlow's default)."""
    import tensorflow as tf

    with tf.device("/GPU:0"):
        a = tf.random.normal((n, n), dtype=dtype)
        b = tf.random.normal((n, n), dtype=dtype)
        product = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)[:1, :1]))
        product().numpy()
        best = float("inf")
        for _ in range(tries):
            t = time.perf_counter()
            product().numpy()
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def read_summary(path: str) -> dict:
    """Settings, slice size, channels and forward FLOPs of a trained model's summary.txt."""
    text = Path(path).read_text()
    settings = json.loads(re.search(r"^settings: (.*)$", text, re.M).group(1))
    shape = [int(v) for v in re.search(r"^input shape: ([\dx]+)$", text, re.M).group(1).split("x")]
    return {"settings": settings, "size": shape[0], "channels": shape[-1], "flops": flops_of(text)}


def flops_of(summary: str) -> int:
    """The forward FLOPs per slice written in a summary.txt."""
    return int(re.search(r"forward FLOPs per slice: ([\d,]+)", summary).group(1).replace(",", ""))


def job_settings(args) -> tuple[dict, int, int]:
    """The model settings (the schema's defaults, or the ``--summary`` model's; then
    ``--set``), slice size and channels of the benchmark's job."""
    from training_fixtures import model_defaults

    size, channels = 96, 4
    settings = model_defaults(ROOT / "workflow" / "schemas" / "config.schema.yaml")
    if args.summary:
        found = read_summary(args.summary)
        settings, size, channels = found["settings"], found["size"], found["channels"]
    for item in args.set:
        key, value = item.split("=", 1)
        settings[key] = parse_value(value)
    if settings["architecture"] == "unet3d":
        sys.exit("this benchmark trains 2D models; for unet3d see benchmarks/bench_unet3d.py")
    settings.update(epochs=args.epochs, steps_per_epoch=args.steps, threads=args.threads)
    settings.update(early_stopping_patience=None, mixed_precision=bool(args.mixed))
    return settings, size, channels


class _LogText(logging.Handler):
    """Collects the formatted records of the training log."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.text = io.StringIO()

    def emit(self, record):
        self.text.write(record.getMessage() + "\n")


def cached_datasets(real_datasets, n_classes: int):
    """A stand-in for ``train.datasets``: the job's validation dataset, and for training
    the first 8 batches of the job's slices, read once, one-hot, repeated, unaugmented."""

    def datasets(d, settings, start_epoch, threads):
        import numpy as np
        import tensorflow as tf

        _, val = real_datasets(d, settings, start_epoch, threads)
        batch = int(settings["batch_size"])
        rows = d.train_slices.iloc[: 8 * batch]
        images, labels = d.train_reader.read(
            rows["case_index"].to_numpy(), rows["slice"].to_numpy()
        )
        onehot = np.eye(n_classes, dtype=np.float32)[labels]
        train = tf.data.Dataset.from_tensor_slices((images, onehot))
        return train.repeat().batch(batch, drop_remainder=True), val

    return datasets


def run_job(folder: Path, splits: Path, settings: dict, threads: int, cached: bool, fused=True):
    """One run of the training job (``train_model``); its rate lines and summary.txt.
    ``fused`` False: with Keras's batch normalisation, as the job on a GPU with op
    determinism (for comparison)."""
    from tumorseg.training import train
    from tumorseg.training.epoch_rate import parse_epoch_rates

    out = folder / f"run{len(list(folder.glob('run*')))}"
    outputs = {
        "out_model": str(out / "model.keras"),
        "out_history": str(out / "history.csv"),
        "out_curves": str(out / "curves.png"),
        "out_summary": str(out / "summary.txt"),
    }
    handler = _LogText()
    logger = logging.getLogger("tumorseg.train")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    swap = mock.patch.object(train, "datasets", cached_datasets(train.datasets, 4))
    try:
        keras_norm = mock.patch("tumorseg.training.fused_norm.use_fused", lambda gpus, det: False)
        with (
            swap if cached else contextlib.nullcontext(),
            contextlib.nullcontext() if fused else keras_norm,
        ):
            train.train_model(
                str(splits), str(splits.parent), settings, **outputs,
                checkpoint_dir=str(out / "checkpoints"), tensorboard_dir=str(out / "tb"),
                labels="brats2017", deterministic=True, threads=threads,
            )  # fmt: skip
    finally:
        logger.removeHandler(handler)
    return parse_epoch_rates(handler.text.getvalue()), Path(outputs["out_summary"])


def input_pipeline_alone(splits: Path, settings: dict, threads: int) -> tuple[float, float]:
    """The job's training dataset iterated without a model: slices/s, CPU ms per slice."""
    from tumorseg.training import data

    train_cases, _ = data.read_split(splits)
    slices = data.read_slices(splits.parent, train_cases)
    reader = data.SliceReader(splits.parent, train_cases)
    n = settings["steps_per_epoch"] * int(settings["batch_size"])
    steps = settings["steps_per_epoch"]
    for _ in data.make_train_dataset(reader, slices, settings, steps, 1, 0, threads):
        pass  # traced once
    ds = data.make_train_dataset(reader, slices, settings, steps, 2, 1, threads)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in ds:
        pass
    return n / (time.perf_counter() - wall), (time.process_time() - cpu) / n * 1000


def bare_model_rates(splits: Path, settings: dict, epochs: int) -> list[float]:
    """Slices/s of the bare model (kind (c)) per epoch after the first, which traces."""
    import numpy as np
    import tensorflow as tf

    from tumorseg.training import data
    from tumorseg.training.assemble import compiled_model
    from tumorseg.training.fused_norm import use_fused
    from tumorseg.training.precision import training_policy

    train_cases, _ = data.read_split(splits)
    reader = data.SliceReader(splits.parent, train_cases)
    batch, steps = int(settings["batch_size"]), int(settings["steps_per_epoch"])
    rows = data.read_slices(splits.parent, train_cases).iloc[: 8 * batch]
    images, labels = reader.read(rows["case_index"].to_numpy(), rows["slice"].to_numpy())
    onehot = np.eye(4, dtype=np.float32)[labels]
    cached = tf.data.Dataset.from_tensor_slices((images, onehot))
    cached = cached.repeat().batch(batch, drop_remainder=True)
    policy = training_policy(bool(settings["mixed_precision"]), 0)
    model = compiled_model(
        settings, images.shape[-1], images.shape[1], epochs * steps, policy, "brats2017",
        use_fused(0, True),
    )  # fmt: skip
    import keras

    class EpochClock(keras.callbacks.Callback):  # epoch hooks only: no per-step work
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            rates.append(steps * batch / (time.perf_counter() - self.start))

    rates: list[float] = []
    model.fit(
        cached, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0,
        callbacks=[EpochClock()],
    )  # fmt: skip
    return rates[1:]


def reference_gflops(args) -> float:
    if args.device == "gpu":
        return gpu_matmul_gflops("float16" if args.mixed else "float32")
    return matmul_gflops(args.matmul_size)


def measure(args, splits: Path, settings: dict) -> dict:
    """Alternate runs of the job, real and cached, each after a matmul reference."""
    results = {"pipeline": [], "cached": [], "bare": [], "matmul": [], "summary": None}
    work = splits.parent / "runs"
    work.mkdir()
    for r in range(args.repeats):
        for kind in ("pipeline", "cached", "bare"):
            results["matmul"].append(reference_gflops(args))
            t = time.perf_counter()
            if kind == "bare":
                rates = bare_model_rates(splits, settings, args.epochs)
                results["bare"] += rates
                print(
                    f"  run {r + 1} {kind:>8}: {time.perf_counter() - t:.0f} s; training "
                    + ", ".join(f"{v:.2f}" for v in rates)
                    + f" slices/s per timed epoch; load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
                continue
            rates, summary = run_job(
                work, splits, settings, args.threads, kind == "cached", not args.keras_batch_norm
            )
            results[kind] += rates[1:]
            results["summary"] = results["summary"] or summary.read_text()
            print(
                f"  run {r + 1} {kind:>8}: {time.perf_counter() - t:.0f} s; training "
                + ", ".join(f"{e['train_rate']:.2f}" for e in rates)
                + " slices/s per epoch (the first left out); matmul "
                f"{results['matmul'][-1]:.0f} GFLOP/s before; load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    return results


def precision_of(summary: str) -> str:
    """The precision the job trained in, from its ``summary.txt``."""
    found = re.search(r"^precision: (.+)$", summary, re.MULTILINE)
    return found.group(1) if found else "unknown"


def _stats(values) -> tuple[float, float]:
    values = list(values)
    return statistics.median(values), max(values)


def report(args, settings, results: dict) -> dict:
    """Print the comparison; returns the median and best training rates."""
    flops = flops_of(results["summary"])
    a_med, a_best = _stats(e["train_rate"] for e in results["pipeline"])
    b_med, b_best = _stats(e["train_rate"] for e in results["cached"])
    m_med, m_best = _stats(results["matmul"])
    c_med, c_best = _stats(results["bare"])
    cores = statistics.median(e["cores"] for e in results["pipeline"])
    cores_b = statistics.median(e["cores"] for e in results["cached"])
    val = statistics.median(e["val_rate"] for e in results["pipeline"])
    epoch_s = statistics.median(e["epoch_s"] for e in results["pipeline"])
    ref = "GPU tf.matmul 8192^2 " + ("float16" if args.mixed else "float32 (TF32)")
    ref = ref if args.device == "gpu" else f"NumPy float32 matmul {args.matmul_size}^2"
    n = len(results["pipeline"])
    print(
        f"\nmodel: {settings['architecture']} depth {settings['depth']} base_filters "
        f"{settings['base_filters']}, batch {settings['batch_size']}, {args.threads} threads, "
        f"{args.device}, precision {precision_of(results['summary'])}, "
        f"{'Keras' if args.keras_batch_norm else 'fused'} batch normalisation; "
        f"{n} epochs of each kind timed"
    )
    print(f"{ref}: {m_best:.1f} GFLOP/s best, {m_med:.1f} median (before each run)")
    print("training job, slices/s (median / best of the epochs):")
    print(
        f"  real pipeline + augmentation + lesion sampling: {a_med:.2f} / {a_best:.2f} "
        f"({cores:.2f} CPU cores used, median)"
    )
    print(
        f"  cached in-memory tensors, no augmentation:      {b_med:.2f} / {b_best:.2f} "
        f"({cores_b:.2f} CPU cores used, median)"
    )
    print(f"  bare model, model.fit on cached tensors:       {c_med:.2f} / {c_best:.2f}")
    print(
        f"ratio pipeline / cached: {a_med / b_med:.3f} median, {a_best / b_best:.3f} best "
        "(target >= 0.9)"
    )
    print(
        f"ratio job (pipeline) / bare model: {a_med / c_med:.3f} median, "
        f"{a_best / c_best:.3f} best (target >= 0.9); cached job / bare model: "
        f"{b_med / c_med:.3f} median"
    )
    print(
        f"CPU time per slice (all threads): {cores / a_med * 1000:.1f} ms pipeline, "
        f"{cores_b / b_med * 1000:.1f} ms cached (less sensitive to other load than the rates)"
    )
    print(
        f"forward FLOPs per slice: {flops / 1e9:.3f} GFLOP (the job's summary.txt); "
        "training step = 3x forward"
    )
    g_med, g_best = 3 * flops * a_med / 1e9, 3 * flops * a_best / 1e9
    print(
        f"training: {g_med:.1f} GFLOP/s median, {g_best:.1f} best; ratio training / matmul "
        f"{g_med / m_med:.3f} median, {g_best / m_best:.3f} best (target >= 0.45)"
    )
    print(
        f"validation: {val:.1f} slices/s (median); an epoch of {args.steps} batches with its "
        f"validation and checkpoint: {epoch_s:.1f} s (median)"
    )
    c_gflops = 3 * flops * c_med / 1e9
    print(f"bare model: {c_gflops:.1f} GFLOP/s median, ratio to matmul {c_gflops / m_med:.3f}")
    return {"median": a_med, "best": a_best, "flops": flops}


def report_log(path: str, measured: dict) -> None:
    """The rates of a workflow training job from its log, beside the benchmark's."""
    from tumorseg.training.epoch_rate import parse_epoch_rates

    text = Path(path).read_text(errors="replace")
    rates = parse_epoch_rates(text)
    threads = re.search(r"training job started: .* \(pid \d+, (\d+) threads\)", text)
    print(f"\nthe workflow job's log {path} ({threads.group(1) if threads else '?'} threads):")
    if rates:
        timed = rates[1:] or rates
        med, best = _stats(e["train_rate"] for e in timed)
        cores = statistics.median(e["cores"] for e in timed)
        print(
            f"  training {med:.2f} slices/s median, {best:.2f} best over epochs "
            f"{timed[0]['epoch']}-{timed[-1]['epoch']} ({cores:.2f} CPU cores used, median); "
            f"job / benchmark: {med / measured['median']:.3f} median"
        )
        return
    plan = re.search(r"(\d+) epochs of (\d+) batches of (\d+)", text)
    epochs = [float(s) for s in re.findall(r"epoch \d+/\d+: ([\d.]+) s;", text)]
    if not plan or not epochs:
        print("  neither rate lines nor epoch lines found")
        return
    per_epoch = int(plan.group(2)) * int(plan.group(3))
    med = per_epoch / statistics.median(epochs[1:] or epochs)
    print(
        f"  no rate lines (a log from before they were written); {per_epoch} slices per "
        f"epoch in {statistics.median(epochs[1:] or epochs):.1f} s (median, validation "
        f"included): {med:.2f} slices/s, not comparable with the training-only rates above"
    )


def start_device(args) -> None:
    """Hide the GPUs for a CPU measurement; for ``--device gpu`` stop unless one is seen."""
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    from tumorseg.training.setup import configure_tensorflow

    gpus = configure_tensorflow(args.threads)
    if args.device == "gpu" and not gpus:
        sys.exit(
            "--device gpu: TensorFlow sees no GPU (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}); a CUDA build of "
            "TensorFlow (pip install 'tensorflow[and-cuda]') and a visible GPU are needed"
        )
    if gpus:
        print(f"training on {gpus[0].name}")


def main() -> None:
    args = parse_args()
    how = limit_blas_threads(args.threads)
    start_device(args)
    from training_fixtures import write_synthetic_cases

    settings, size, channels = job_settings(args)
    print(
        f"{os.cpu_count()} CPUs; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
        "at the start"
    )
    print(f"BLAS threads: {how}")
    with tempfile.TemporaryDirectory() as tmp:
        n_val = max(1, args.cases // 5)
        cases = {f"case{i:03d}": "val" if i < n_val else "train" for i in range(args.cases)}
        splits = write_synthetic_cases(tmp, cases, depth=77, size=size, channels=channels, seed=1)
        rate, cpu_ms = input_pipeline_alone(splits, settings, args.threads)
        print(f"input pipeline alone (no model): {rate:.0f} slices/s, {cpu_ms:.2f} CPU ms/slice")
        results = measure(args, splits, settings)
    measured = report(args, settings, results)
    if args.log:
        report_log(args.log, measured)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end")


if __name__ == "__main__":
    main()
