"""Per-epoch checkpoints of a training job, their fingerprint (the settings, cases and
slice tables they were made with) and the resumption from the latest one."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import pandas as pd

from tumorseg.io.tables import read_json, write_json
from tumorseg.resources import RUNTIME_KEYS
from tumorseg.training.inputs import TrainingData

log = logging.getLogger("tumorseg.train")  # one logger for every part of the training job


def fingerprint(settings: dict, extra: dict) -> str:
    content = {k: v for k, v in sorted(settings.items()) if k not in RUNTIME_KEYS}
    blob = json.dumps({"settings": content, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class Checkpoints:
    """Per-epoch checkpoint folders with an atomically switched ``latest.json`` pointer."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def prepare(self, fingerprint: str) -> None:
        """Keep a matching checkpoint, discard another, drop half-written epoch folders."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fp_path = self.folder / "fingerprint.json"
        if fp_path.is_file():
            old = read_json(fp_path, "checkpoint fingerprint").get("hash")
            if old != fingerprint:
                log.warning(
                    "discarding the checkpoint in %s: made with other settings or data",
                    self.folder,
                )
                self.clear()
                self.folder.mkdir(parents=True, exist_ok=True)
        write_json(fp_path, {"hash": fingerprint})
        self._prune()

    def latest(self) -> tuple[dict, Path] | None:
        pointer = self.folder / "latest.json"
        if not pointer.is_file():
            return None
        folder = self.folder / read_json(pointer, "checkpoint pointer")["folder"]
        return read_json(folder / "state.json", "checkpoint state"), folder

    def save(self, state: dict, history: pd.DataFrame, model, best_model=None) -> None:
        """Write epoch ``state["epoch"]``: training weights, history, state; then point to it."""
        name = f"epoch_{state['epoch']:04d}"
        final = self.folder / name
        tmp = self.folder / f"{name}.tmp"
        for p in (tmp, final):
            shutil.rmtree(p, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save_weights(tmp / "train.weights.h5")
        if best_model is not None:
            best_model.save_weights(tmp / "model.weights.h5")
        history.to_csv(tmp / "history.csv", index=False)
        write_json(tmp / "state.json", state)
        _fsync_dir(tmp)
        os.replace(tmp, final)
        write_json(self.folder / "latest.json", {"folder": name})
        self._prune()

    def _prune(self) -> None:
        keep = set()
        found = self.latest()
        if found is not None:
            state, folder = found
            keep.add(folder.name)
            if state.get("best_epoch") is not None:
                keep.add(f"epoch_{state['best_epoch']:04d}")
        for p in self.folder.glob("epoch_*"):
            if p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)

    def clear(self) -> None:
        for p in self.folder.glob("epoch_*"):
            shutil.rmtree(p, ignore_errors=True)
        for name in ("latest.json", "fingerprint.json"):
            (self.folder / name).unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            pass


def _fsync_dir(folder: Path) -> None:
    for p in folder.iterdir():
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())


def run_fingerprint(settings, d: TrainingData, fold, labels) -> str:
    return fingerprint(
        settings,
        {
            "train": d.train_cases,
            "val": d.val_cases,
            "fold": fold,
            "shape": d.shape,
            "steps": d.steps,
            "labels": None
            if labels is None
            else {"names": labels.names, "regions": labels.regions},
            "train_slices": hashlib.sha256(d.train_slices.to_csv().encode()).hexdigest(),
            "val_slices": hashlib.sha256(d.val_slices.to_csv().encode()).hexdigest(),
            **({"windows": d.windows} if d.windows else {}),
        },
    )


def resume(model, checkpoints, tensorboard_dir, epochs) -> tuple[dict, list[dict]]:
    """The training state and history of the latest matching checkpoint (weights and
    optimizer state loaded into ``model``), or a fresh start."""
    found = checkpoints.latest()
    if found is None:
        shutil.rmtree(tensorboard_dir, ignore_errors=True)
        return {"epoch": 0, "best": None, "best_epoch": None, "wait": 0, "stopped": False}, []
    state, folder = found
    model.optimizer.build(model.trainable_variables)
    model.load_weights(folder / "train.weights.h5")
    log.info(
        "resuming from the checkpoint after epoch %d of %d (%s; optimizer step %d)",
        state["epoch"],
        epochs,
        folder,
        int(model.optimizer.iterations.numpy()),
    )
    return state, pd.read_csv(folder / "history.csv").to_dict("records")
