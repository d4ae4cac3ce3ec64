"""The model's own training speed on this CPU: float32 alternatives, each against matmul.

Each alternative trains the model the training job compiles (``compiled_model``: the
schema's default U-Net unless ``--set`` changes it; the job's loss, metrics, optimiser and
fused batch normalisation, float32) on cached in-memory tensors with ``model.fit``, no
callbacks of the job and no validation, in its own process (so that environment variables
such as ``TF_ENABLE_ONEDNN_OPTS`` take effect at TensorFlow's start), with ``--threads``
threads as the job sets them and op determinism on as the job has it (one alternative
without). Before training, the same process times NumPy's float32 matmul (2048², best of 3)
with the same threads; each line prints the training rate (slices/s, median of the timed
epochs; the first epoch, which traces, is left out), its GFLOP/s (3 × the forward FLOPs of
the model) and their ratio to that matmul.

The alternatives: oneDNN on (TensorFlow's default on x86) or off, XLA (``jit_compile``),
batch sizes, filter counts (8 float32 fill an AVX2 register, 16 an AVX-512 one) and the
decoder's up-sampling (transposed convolution or nearest up-sampling plus convolution).

Run it as the machine is (``ONEDNN_MAX_CPU_ISA=AVX2`` makes an AVX-512 machine compute like
an AVX2 one; the CPU's kind is printed first).

Usage: python benchmarks/bench_model_speed.py [--threads 2] [--epochs 4] [--steps 12]
       [--only NAME ...] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name -> (environment, model settings, fit options)
ALTERNATIVES = {
    "default (oneDNN on, batch 16, transposed conv)": ({}, {}, {}),
    "oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, {}, {}),
    "XLA (jit_compile)": ({}, {}, {"jit_compile": True}),
    "op determinism off": ({}, {}, {"nondeterministic": True}),
    "batch 8": ({}, {"batch_size": 8}, {}),
    "batch 32": ({}, {"batch_size": 32}, {}),
    "8 filters": ({}, {"base_filters": 8}, {}),
    "24 filters": ({}, {"base_filters": 24}, {}),
    "32 filters": ({}, {"base_filters": 32}, {}),
    "up-sampling + conv decoder": ({}, {"upsampling": "upsample"}, {}),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4, help="epochs (the first untimed)")
    parser.add_argument("--steps", type=int, default=12, help="batches per epoch")
    parser.add_argument("--only", nargs="*", help="names (or their first words) to run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args()


def cpu_kind() -> str:
    """The CPU's model name, whether it has AVX-512 and bfloat16, and oneDNN's ISA limit."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    name = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln), "?"
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
    )
    return (
        f"{name}; avx2 {'avx2' in flags}, avx512f {'avx512f' in flags}, avx512_bf16 "
        f"{'avx512_bf16' in flags}; ONEDNN_MAX_CPU_ISA="
        f"{os.environ.get('ONEDNN_MAX_CPU_ISA', '<unset>')}"
    )  # fmt: skip


def child(spec: dict) -> dict:
    """One alternative in this process: matmul reference, then the timed training."""
    threads = int(spec["threads"])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT / "tests"))
    from bench_training import matmul_gflops

    matmul = matmul_gflops(2048)
    from tumorseg.training.setup import start_tensorflow

    start_tensorflow(threads, 1, deterministic=not spec["fit"].get("nondeterministic"))
    import keras
    import numpy as np
    import tensorflow as tf
    from training_fixtures import model_defaults

    from tumorseg.training.assemble import compiled_model
    from tumorseg.training.models import forward_flops

    settings = model_defaults(ROOT / "workflow" / "schemas" / "config.schema.yaml")
    settings.update(spec["settings"])
    batch, steps, epochs = int(settings["batch_size"]), int(spec["steps"]), int(spec["epochs"])
    rng = np.random.default_rng(0)
    images = rng.standard_normal((8 * batch, 96, 96, 4), dtype=np.float32)
    labels = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (8 * batch, 96, 96))]
    cached = tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(batch, True)
    model = compiled_model(settings, 4, 96, epochs * steps, None, "brats2017", True)
    if spec["fit"].get("jit_compile"):
        model.jit_compile = True
    rates: list[float] = []

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            rates.append(steps * batch / (time.perf_counter() - self.start))

    model.fit(cached, epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=[EpochClock()])
    rate = statistics.median(rates[1:])
    gflops = 3 * forward_flops(model) * rate / 1e9
    return {"rate": rate, "gflops": gflops, "matmul": matmul, "ratio": gflops / matmul}


def run_alternative(args, name: str, env: dict, settings: dict, fit: dict) -> dict:
    for item in args.set:
        key, value = item.split("=", 1)
        settings = {key: json.loads(value), **settings}
    spec = {"threads": args.threads, "epochs": args.epochs, "steps": args.steps}
    spec.update(settings=settings, fit=fit)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    print(f"CPU: {cpu_kind()}; {args.threads} threads; load {os.getloadavg()[0]:.2f}")
    print(f"model: the schema's default U-Net (16 filters) with {args.set or 'no changes'}")
    print(f"{'alternative':<58} {'slices/s':>9} {'GFLOP/s':>8} {'matmul':>7} {'ratio':>6}")
    for name, (env, settings, fit) in ALTERNATIVES.items():
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        r = run_alternative(args, name, env, dict(settings), fit)
        if "error" in r:
            print(f"{name:<58} failed: {r['error']}")
            continue
        print(
            f"{name:<58} {r['rate']:>9.2f} {r['gflops']:>8.1f} {r['matmul']:>7.1f} "
            f"{r['ratio']:>6.3f}",
            flush=True,
        )
    print(f"load {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
