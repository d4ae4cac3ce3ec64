"""Training end to end on tiny synthetic data: loss falls, outputs, determinism, resume."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from figure_checks import written
from training_fixtures import model_defaults, write_synthetic_cases

from tumorseg.training.train import Checkpoints, train_model

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SRC = str(ROOT / "src")


def tiny_settings(**overrides):
    s = model_defaults(SCHEMA)
    s.update(
        depth=2,
        base_filters=4,
        epochs=4,
        steps_per_epoch=6,
        batch_size=8,
        learning_rate=0.01,
        schedule="constant",
        seed=7,
    )
    s.update(overrides)
    return s


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    split = {f"c{i}": "val" if i >= 6 else "train" for i in range(8)}
    splits = write_synthetic_cases(root, split, depth=12, size=32, channels=4, seed=11)
    return root, splits


def outputs(folder: Path) -> dict:
    return {
        "out_model": str(folder / "model.keras"),
        "out_history": str(folder / "history.csv"),
        "out_curves": str(folder / "curves.png"),
        "out_summary": str(folder / "summary.txt"),
        "checkpoint_dir": str(folder / "checkpoints"),
        "tensorboard_dir": str(folder / "tensorboard"),
    }


def run(dataset, folder, settings, **kw):
    root, splits = dataset
    train_model(str(splits), str(root), settings, **outputs(folder), **kw)
    return keras.models.load_model(folder / "model.keras", compile=False, safe_mode=True)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run1")
    model = run(dataset, folder, tiny_settings())
    return folder, model


def test_training_learns_and_writes_its_outputs(trained):
    folder, model = trained
    history = pd.read_csv(folder / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert history["loss"].iloc[-1] < 0.8 * history["loss"].iloc[0]
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    assert history["dice_wt"].iloc[-1] > 0.5  # training batches; validation lags behind
    # while batch normalisation's moving statistics settle
    for col in ("val_loss", "val_dice_tc", "val_dice_et", "val_dice_mean", "learning_rate"):
        assert history[col].notna().all()
    mean = history[["val_dice_wt", "val_dice_tc", "val_dice_et"]].mean(axis=1)
    np.testing.assert_allclose(history["val_dice_mean"], mean, rtol=1e-6)
    summary = (folder / "summary.txt").read_text()
    assert re.search(r"parameters: [\d,]+ total", summary)
    assert "forward FLOPs per slice" in summary
    assert written(folder / "curves.png")
    assert list((folder / "tensorboard" / "validation").glob("events.out.tfevents.*"))
    assert not (folder / "checkpoints").exists()  # removed after success
    assert model.input_shape == (None, 32, 32, 4)
    assert model.output_shape == (None, 32, 32, 4)


def test_tensorboard_shows_the_epoch_scalars(trained):
    """What `tensorboard --logdir <model>/tensorboard` shows: every epoch's scalars of
    history.csv, training and validation as two runs."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.util import tensor_util

    folder, _ = trained
    history = pd.read_csv(folder / "history.csv")
    boards = EventMultiplexer().AddRunsFromDirectory(str(folder / "tensorboard")).Reload()
    assert set(boards.Runs()) == {"train", "validation"}
    for run, prefix in (("train", ""), ("validation", "val_")):
        tags = boards.GetAccumulator(run).Tags()["tensors"]
        for column in ("loss", "dice_wt", "dice_et", "dice_mean" if prefix else "learning_rate"):
            assert f"epoch_{column}" in tags, (run, tags)
            events = boards.Tensors(run, f"epoch_{column}")
            assert [e.step for e in events] == list(range(4))
            values = [float(tensor_util.make_ndarray(e.tensor_proto)) for e in events]
            np.testing.assert_allclose(values, history[prefix + column], rtol=1e-5)


def test_saved_model_loads_in_a_clean_process(trained):
    folder, model = trained
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 4)).astype(np.float32)
    np.save(folder / "x.npy", x)
    code = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]);"
        "import keras, tumorseg.training.models;"
        "m = keras.models.load_model(sys.argv[2], compile=False, safe_mode=True);"
        "np.save(sys.argv[3], m.predict(np.load(sys.argv[4]), verbose=0))"
    )
    subprocess.run(
        [sys.executable, "-c", code, SRC, str(folder / "model.keras"), str(folder / "y.npy")]
        + [str(folder / "x.npy")],
        check=True,
        capture_output=True,
    )
    y = np.load(folder / "y.npy")
    np.testing.assert_allclose(y, model.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)


def test_same_settings_same_weights(dataset, trained, tmp_path):
    folder, first = trained
    second = run(dataset, tmp_path, tiny_settings())
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        assert np.array_equal(a, b)
    h1 = pd.read_csv(folder / "history.csv").drop(columns="seconds")
    h2 = pd.read_csv(tmp_path / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(h1, h2)


def test_checkpoint_with_other_settings_is_discarded(tmp_path):
    ckpt = Checkpoints(tmp_path / "ck")
    ckpt.prepare("one")
    (ckpt.folder / "epoch_0002").mkdir()
    (ckpt.folder / "epoch_0002" / "state.json").write_text(json.dumps({"epoch": 2}))
    (ckpt.folder / "latest.json").write_text(json.dumps({"folder": "epoch_0002"}))
    (ckpt.folder / "epoch_0003.tmp").mkdir()  # half-written: dropped
    ckpt.prepare("one")
    assert ckpt.latest()[0] == {"epoch": 2}
    assert not (ckpt.folder / "epoch_0003.tmp").exists()
    ckpt.prepare("two")
    assert ckpt.latest() is None
    assert not (ckpt.folder / "epoch_0002").exists()


def test_killed_training_resumes_from_its_last_epoch(dataset, tmp_path, caplog):
    root, splits = dataset
    settings = tiny_settings(epochs=6, steps_per_epoch=10, schedule="one_cycle")
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    args = {"splits_path": str(splits), "preprocessed_dir": str(root), **outputs(tmp_path)}
    (tmp_path / "args.json").write_text(json.dumps(args))
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from tumorseg.training.train import train_model;"
        "train_model(settings=json.load(open(sys.argv[2])), **json.load(open(sys.argv[3])))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, SRC, str(tmp_path / "settings.json")]
        + [str(tmp_path / "args.json")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latest = tmp_path / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 120
    try:
        while not latest.exists():
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (tmp_path / "model.keras").exists()
    state, folder = Checkpoints(tmp_path / "checkpoints").latest()
    saved = state["epoch"]
    assert 1 <= saved < 6
    saved_history = pd.read_csv(folder / "history.csv")

    caplog.set_level("INFO", logger="tumorseg")
    train_model(settings=settings, **args)
    match = re.search(
        r"resuming from the checkpoint after epoch (\d+) of 6 .*optimizer step (\d+)", caplog.text
    )
    assert match, caplog.text
    assert int(match.group(1)) == saved
    assert int(match.group(2)) == saved * 10
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4, 5, 6]
    pd.testing.assert_frame_equal(history.iloc[:saved], saved_history)
    assert history["learning_rate"].iloc[-1] < 1e-5  # the one-cycle ran to its end
    assert keras.models.load_model(tmp_path / "model.keras", compile=False, safe_mode=True)


def test_early_stopping_ends_a_run_that_no_longer_improves(dataset, tmp_path, caplog):
    # a learning rate of ~0 and no batch normalisation: validation Dice cannot improve
    settings = tiny_settings(
        epochs=5, learning_rate=1e-12, batch_norm=False, early_stopping_patience=2
    )
    caplog.set_level("INFO", logger="tumorseg")
    run(dataset, tmp_path, settings)
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert history["val_dice_mean"].nunique() == 1
    assert "early stopping" in caplog.text
    assert "epochs trained: 3 of 5 (early stop)" in (tmp_path / "summary.txt").read_text()
    assert "best epoch (mean val Dice WT/TC/ET): 1 " in (tmp_path / "summary.txt").read_text()


def test_epoch_rate_lines_parse_back_and_a_resumed_epoch_counts_once():
    from tumorseg.training.epoch_rate import parse_epoch_rates

    line = (
        "2026-12-03 16:39:48,255 INFO tumorseg.train: epoch {e} rate: training {r} slices/s "
        "(912 in 17.900 s, 1.81 CPU cores); validation 138.10 slices/s (205 in 1.484 s); "
        "epoch 19.500 s with the checkpoint\n"
    )
    text = line.format(e=1, r="10.00") + line.format(e=2, r="50.95") + line.format(e=1, r="51.00")
    rates = parse_epoch_rates(text + "epoch 3/12: 21.2 s; loss 0.4114\n")
    assert [r["epoch"] for r in rates] == [1, 2]
    assert rates[0]["train_rate"] == 51.0  # the resumed job's line for epoch 1
    assert rates[1] == {
        "epoch": 2, "train_rate": 50.95, "unit": "slices", "train_n": 912.0,
        "train_s": 17.9, "cores": 1.81, "val_rate": 138.1, "val_n": 205.0, "val_s": 1.484,
        "epoch_s": 19.5,
    }  # fmt: skip
