"""The 3D U-Net: the model, training on tumour-fraction patches (the loss falls), kill and
resume, and prediction by sliding windows through the workflow's predict step."""

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
from training_fixtures import model_defaults, write_synthetic_cases

from tumorseg.errors import InputError
from tumorseg.training.losses import get_loss
from tumorseg.training.memory import estimate_mem_mb
from tumorseg.training.models import build_model, forward_flops
from tumorseg.training.patches import PatchReader
from tumorseg.training.train import Checkpoints, train_model
from tumorseg.training.validation import DEFAULT_WINDOWS, validate_volumes

ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")


def settings3d(**overrides):
    s = model_defaults()
    s.update(
        architecture="unet3d",
        depth=2,
        base_filters=4,
        patch_size=[32, 32, 8],
        loss="dice",
        epochs=4,
        steps_per_epoch=5,
        batch_size=2,
        learning_rate=0.01,
        schedule="constant",
        seed=5,
    )
    s.update(overrides)
    return s


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre3d")
    split = {f"c{i}": "val" if i >= 4 else "train" for i in range(5)}
    splits = write_synthetic_cases(root, split, depth=16, size=32, channels=2, seed=3)
    return root, splits


def outputs(folder: Path) -> dict:
    names = ("model.keras", "history.csv", "curves.png", "summary.txt")
    keys = ("out_model", "out_history", "out_curves", "out_summary")
    out = {k: str(folder / n) for k, n in zip(keys, names, strict=True)}
    return {**out, "checkpoint_dir": str(folder / "ckpt"), "tensorboard_dir": str(folder / "tb")}


def test_unet3d_shapes_flops_and_memory_estimate():
    s = settings3d()
    model = build_model(s, 2, 4, input_size=(8, 32, 32))
    assert model.output_shape == (None, 8, 32, 32, 4)
    assert forward_flops(model) > 0
    with pytest.raises(InputError, match="divisible by 4"):
        build_model(s, 2, 4, input_size=(6, 32, 32))
    small = estimate_mem_mb(s, 2, 4)
    assert estimate_mem_mb({**s, "patch_size": [96, 96, 16], "batch_size": 4}, 2, 4) > small


def test_3d_training_loss_falls(volumes, tmp_path, caplog):
    root, splits = volumes
    caplog.set_level("INFO", logger="tumorseg")
    train_model(str(splits), str(root), settings3d(), **outputs(tmp_path))
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["loss"].iloc[-1] < history["loss"].iloc[0], history
    assert {"val_dice_wt", "val_dice_tc", "val_dice_et", "val_dice_mean"} <= set(history)
    assert "memory estimate" in caplog.text
    model = keras.models.load_model(tmp_path / "model.keras", compile=False, safe_mode=True)
    assert model.input_shape == (None, 8, 32, 32, 2)
    # the Dice that chose the saved epoch is that of the whole validation volume predicted
    # as inference predicts it (sliding window, Gaussian), not the tiles' Dice
    assert "whole-volume validation (sliding window, overlap 0.5, Gaussian)" in caplog.text
    reader = PatchReader(root, ["c4"], 4, settings3d()["patch_size"])
    scores = validate_volumes(
        lambda x: np.asarray(model(x, training=False)), reader, "brats2017", DEFAULT_WINDOWS, 2,
        get_loss(settings3d()),
    )  # fmt: skip
    best = history.loc[history["val_dice_mean"].idxmax()]
    for name, value in scores.items():
        assert best[f"val_{name}"] == pytest.approx(value, abs=1e-6), (name, best, scores)


def test_killed_3d_training_resumes(volumes, tmp_path, caplog):
    root, splits = volumes
    settings = settings3d(epochs=5, steps_per_epoch=6)
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    args = {"splits_path": str(splits), "preprocessed_dir": str(root), **outputs(tmp_path)}
    (tmp_path / "args.json").write_text(json.dumps(args))
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from tumorseg.training.train import train_model;"
        "train_model(settings=json.load(open(sys.argv[2])), **json.load(open(sys.argv[3])))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, SRC, str(tmp_path / "settings.json")]
        + [str(tmp_path / "args.json")],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latest = tmp_path / "ckpt" / "latest.json"
    deadline = time.monotonic() + 180
    try:
        while not latest.exists():
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 3 minutes"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    state, folder = Checkpoints(tmp_path / "ckpt").latest()
    saved = state["epoch"]
    assert 1 <= saved < 5
    saved_history = pd.read_csv(folder / "history.csv")
    caplog.set_level("INFO", logger="tumorseg")
    train_model(settings=settings, **args)
    match = re.search(r"resuming from the checkpoint after epoch (\d+) of 5", caplog.text)
    assert match and int(match.group(1)) == saved, caplog.text
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4, 5]
    pd.testing.assert_frame_equal(history.iloc[:saved], saved_history)


def test_sliding_window_prediction_of_a_3d_model(volumes):
    from tumorseg.inference.predict import predict_probabilities

    root, _ = volumes
    image = np.load(root / "c4" / "image.npy", allow_pickle=False)  # (16, 32, 32, 2)
    model = build_model(settings3d(), 2, 4, input_size=(8, 32, 32))
    probs = predict_probabilities(model, image, 16, {"overlap": 0.5, "gaussian": True})
    assert probs.shape == (16, 32, 32, 4)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    # a window covering the whole volume: one forward pass of the whole volume
    whole = build_model(settings3d(patch_size=[32, 32, 16]), 2, 4, input_size=(16, 32, 32))
    one = predict_probabilities(whole, image, 16, {"overlap": 0.5, "gaussian": True})
    direct = np.asarray(whole(image[None].astype(np.float32), training=False))[0]
    np.testing.assert_allclose(one, direct, atol=1e-6)


def test_same_3d_settings_same_weights(volumes, tmp_path):
    root, splits = volumes
    weights = []
    for name in ("a", "b"):
        folder = tmp_path / name
        train_model(
            str(splits), str(root), settings3d(epochs=2, steps_per_epoch=3), **outputs(folder)
        )
        model = keras.models.load_model(folder / "model.keras", compile=False, safe_mode=True)
        weights.append(model.get_weights())
    for left, right in zip(*weights, strict=True):
        np.testing.assert_array_equal(left, right)
