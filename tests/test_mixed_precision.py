"""The mixed-precision paths of training, run on CPU (TensorFlow computes mixed_float16 on
CPU too, slowly), so that a GPU user's first run does not take an untested branch; and the
choice of precision: float16 on a GPU, bfloat16 on a CPU that has the instructions."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from training_fixtures import model_defaults

from tumorseg.training.precision import cpu_bf16_flags, training_policy

_INTEL = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f {extra}\nbugs\t\t: spectre\n"


@pytest.mark.parametrize(
    ("extra", "gpus", "expected"),
    [
        ("avx512_bf16 avx512_vnni", 0, "mixed_bfloat16"),
        ("amx_bf16 amx_tile", 0, "mixed_bfloat16"),
        ("avx512_vnni", 0, None),  # bfloat16 would be emulated: float32
        ("avx512_vnni", 1, "mixed_float16"),
        ("avx512_bf16", 2, "mixed_float16"),  # a GPU takes precedence
    ],
)
def test_training_policy_follows_the_hardware(tmp_path, caplog, extra, gpus, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(_INTEL.format(extra=extra))
    caplog.set_level(logging.INFO, logger="tumorseg.training.precision")
    assert training_policy(True, gpus, cpuinfo) == expected
    assert (
        "precision: "
        + {None: "float32", "mixed_float16": "mixed float16"}.get(expected, "mixed bfloat16")
        in caplog.text
    )
    assert training_policy(False, gpus, cpuinfo) is None  # not asked: float32 everywhere


def test_cpu_flags_unreadable_or_absent(tmp_path):
    assert cpu_bf16_flags(tmp_path / "missing") == []  # macOS, Windows: no /proc/cpuinfo
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert cpu_bf16_flags(tmp_path / "arm") == []  # only the x86 flags are trusted
    assert training_policy(True, 0, tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("policy", "fused"),
    [
        ("mixed_float16", False),  # a GPU job with op determinism
        ("mixed_float16", True),  # a GPU job without
        ("mixed_bfloat16", True),  # a CPU job with bfloat16 instructions
    ],
)
def test_mixed_precision_trains_saves_and_predicts_on_cpu(tmp_path, policy, fused):
    import keras

    from tumorseg.inference.predict import load_model, predict_probabilities
    from tumorseg.training.assemble import build, compiled_model
    from tumorseg.training.fused_norm import FusedBatchNormalization

    keras.utils.set_random_seed(0)
    settings = {**model_defaults(), "depth": 2, "base_filters": 4, "batch_size": 4}
    model = compiled_model(settings, 4, 32, total_steps=4, policy=policy, fused_batch_norm=fused)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(isinstance(n, FusedBatchNormalization) == fused for n in norms)
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")  # bfloat16 needs no loss scaling
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == policy.split("_")[1] for layer in convs)
    assert all(w.dtype == "float32" for w in model.weights)  # float32 master weights

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 32, 32, 4)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (8, 32, 32))]
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = [np.array(w) for w in model.trainable_weights]
    # every weight learnt (no gradient lost to the narrow type)
    assert all(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))

    out = model(x[:2], training=False)
    assert out.dtype == "float32"  # the softmax stays in float32
    clean = build(settings, 4, 32, "brats2017")  # the model train_model saves: float32
    clean.set_weights(model.get_weights())
    path = tmp_path / "mixed.keras"
    clean.save(path)
    loaded = load_model(str(path))  # safe mode
    probs = predict_probabilities(loaded, x[:3].astype(np.float16), batch_size=2)
    assert probs.dtype == np.float32 and probs.shape == (3, 32, 32, 4)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-3)
    half = x[:3].astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(probs, np.asarray(loaded(half)), atol=1e-6)


class _FakeGPU:
    name, device_type = "/physical_device:GPU:0", "GPU"


def test_configure_tensorflow_sets_memory_growth_on_each_gpu(monkeypatch):
    import tensorflow as tf

    from tumorseg.training.setup import configure_tensorflow

    grown = []
    real = tf.config.list_physical_devices
    monkeypatch.setattr(
        tf.config,
        "list_physical_devices",
        lambda kind=None: [_FakeGPU()] if kind == "GPU" else real(kind),
    )
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda d, on: grown.append(on))
    assert [g.name for g in configure_tensorflow(2)] == [_FakeGPU.name]
    assert grown == [True]


def test_the_gpu_branch_of_a_training_job_runs_on_cpu(tmp_path, monkeypatch, caplog):
    """What a first GPU run takes that a CPU run does not: the job sees a GPU (here a
    stand-in; TensorFlow still places the ops on the CPU), so it trains in mixed precision
    with Keras's batch normalisation (op determinism on a GPU), and writes a float32 model
    that loads in safe mode; its log names the device choices and each epoch's rate."""
    from training_fixtures import write_synthetic_cases

    from tumorseg.inference.predict import load_model
    from tumorseg.training import setup, train
    from tumorseg.training.data import read_slices
    from tumorseg.training.epoch_rate import parse_epoch_rates

    monkeypatch.setattr(setup, "configure_tensorflow", lambda threads: [_FakeGPU()])
    used = []
    real_compiled = train.compiled_model
    monkeypatch.setattr(train, "compiled_model", lambda *a: used.append(a) or real_compiled(*a))
    split = {f"c{i}": "val" if i >= 3 else "train" for i in range(4)}
    splits = write_synthetic_cases(tmp_path, split, depth=8, size=32, channels=4, seed=3)
    settings = {**model_defaults(), "depth": 2, "base_filters": 4, "batch_size": 4}
    settings.update(epochs=2, steps_per_epoch=2, mixed_precision=True)
    out = tmp_path / "run"
    caplog.set_level("INFO", logger="tumorseg.train")
    train.train_model(
        str(splits), str(tmp_path), settings, str(out / "model.keras"), str(out / "h.csv"),
        str(out / "curves.png"), str(out / "summary.txt"), str(out / "ckpt"), str(out / "tb"),
        threads=1,
    )  # fmt: skip
    policy, fused = used[0][4], used[0][6]
    assert policy == "mixed_float16" and fused is False
    summary = (out / "summary.txt").read_text()
    assert "precision: float16 (mixed)" in summary and "GPUs: 1" in summary
    assert "Keras's layer (op determinism on a GPU)" in caplog.text
    model = load_model(str(out / "model.keras"))
    assert all(w.dtype == "float32" for w in model.weights)
    assert not any(type(layer).__module__.startswith("tumorseg") for layer in model.layers)
    rates = parse_epoch_rates(caplog.text)
    assert [r["epoch"] for r in rates] == [1, 2]
    n_val = len(read_slices(tmp_path, ["c3"]))  # the validation case's slices with brain
    assert all(r["train_n"] == 8 and r["val_n"] == n_val for r in rates)
    assert all(r["train_rate"] > 0 and r["cores"] > 0 and r["unit"] == "slices" for r in rates)


@pytest.mark.parametrize(
    ("isa", "expected"),
    [
        ("AVX2", []),
        ("avx512_core", []),
        ("AVX512_CORE_BF16", ["avx512_bf16"]),
        ("", ["avx512_bf16"]),
    ],
)
def test_a_onednn_isa_limit_below_bf16_counts_as_no_bf16(tmp_path, isa, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(_INTEL.format(extra="avx512_bf16"))
    assert cpu_bf16_flags(cpuinfo, {"ONEDNN_MAX_CPU_ISA": isa}) == expected


def test_as_avx2_holds_every_runtime_dispatch_to_avx2(tmp_path):
    """benchmarks/as_avx2 runs a command as on a CPU without AVX-512: oneDNN's limit (so no
    bfloat16 training), NumPy's SIMD dispatch without its AVX-512 targets, OpenBLAS's
    Haswell kernels; without a command it stops with its usage."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    wrapper = Path(__file__).resolve().parents[1] / "benchmarks" / "as_avx2"
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(_INTEL.format(extra="avx512_bf16"))
    probe = (
        "import json, os, sys\n"
        "from numpy._core._multiarray_umath import __cpu_features__ as f\n"
        "from tumorseg.training.precision import cpu_bf16_flags\n"
        "print(json.dumps({'v4': bool(f.get('X86_V4')), 'icl': bool(f.get('AVX512_ICL')),\n"
        "    'blas': os.environ.get('OPENBLAS_CORETYPE'),\n"
        "    'isa': os.environ.get('ONEDNN_MAX_CPU_ISA'),\n"
        "    'bf16': cpu_bf16_flags(sys.argv[1])}))\n"
    )
    run = subprocess.run(
        [str(wrapper), sys.executable, "-c", probe, str(cpuinfo)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    seen = json.loads(run.stdout)
    assert seen == {"v4": False, "icl": False, "blas": "Haswell", "isa": "AVX2", "bf16": []}
    usage = subprocess.run([str(wrapper)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr
