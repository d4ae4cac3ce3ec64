"""Train one model (one ``{model}`` wildcard of the workflow): resumable and deterministic.

Resumability: after every epoch, model and optimizer state, the history so far and the
training state (best epoch, early-stopping counter) are written to a new folder
``<checkpoint_dir>/epoch_NNNN/``, and only then is ``latest.json`` switched to it (atomic
rename), so a job killed at any moment (SIGKILL, preemption, a time limit) resumes from
its last complete epoch when run again. The checkpoint folder is not a declared output, so
Snakemake's clean-up of incomplete outputs leaves it alone. ``fingerprint.json`` holds a
hash of the settings (resources excluded), the train/validation cases and their slice
tables; a checkpoint with another fingerprint is discarded. Epoch ``e`` always draws the
same batches (:mod:`tumorseg.training.data`), so a resumed run sees the data an uninterrupted run
would have seen. After a successful run the checkpoints are removed.

Model selection: the saved ``model.keras`` holds the weights of the epoch with the best
mean validation Dice over the label map's regions (WT, TC and ET for BraTS; ``lesion`` for
binary masks) (``val_dice_mean``); early stopping watches the same number. The model is
saved without optimizer state, in float32.

Determinism: the seed comes from the settings; with ``deterministic`` TensorFlow's op
determinism is switched on, and on CPU the same settings, data and seed give the same
weights bit for bit.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pandas as pd

from tumorseg.io.atomic import atomic_path
from tumorseg.io.tables import write_json
from tumorseg.report.figures import plot_curves
from tumorseg.tasks.translation import write_target_scale
from tumorseg.training.assemble import build, compiled_model
from tumorseg.training.callbacks import TensorBoardScalars, history_metrics, make_epoch_callback
from tumorseg.training.checkpoints import Checkpoints, resume, run_fingerprint
from tumorseg.training.inputs import TrainingData, datasets, training_data, val_samples
from tumorseg.training.precision import policy_name
from tumorseg.training.setup import hardware, precision, start_tensorflow
from tumorseg.training.validation import volume_validation_callback

log = logging.getLogger("tumorseg.train")  # one logger for every part of the training job


def _summary_text(model, settings, facts: dict) -> str:
    from tumorseg.training.models import forward_flops, parameter_counts

    lines: list[str] = []
    model.summary(print_fn=lambda s, **_: lines.append(s), line_length=100)
    counts = parameter_counts(model)
    flops = forward_flops(model)
    head = [
        f"model: {facts.get('name', model.name)} ({settings['architecture']})",
        f"parameters: {counts['total']:,} total, {counts['trainable']:,} trainable, "
        f"{counts['non_trainable']:,} non-trainable",
        f"forward FLOPs per slice: {flops:,} ({flops / 1e9:.3f} GFLOP)",
    ]
    head += [f"{k}: {v}" for k, v in facts.items() if k != "name"]
    head.append("settings: " + json.dumps(settings, sort_keys=True))
    return "\n".join(head) + "\n\n" + "\n".join(lines) + "\n"


def _fit(model, clean_model, d: TrainingData, settings, run: dict, threads: int) -> dict:
    """Train from ``run["state"]`` to the last epoch; returns the final state."""
    import keras

    from tumorseg.training.epoch_rate import rate_callback

    checkpoints, state, history_rows = run["checkpoints"], run["state"], run["history"]
    train_ds, val_ds = datasets(d, settings, int(state["epoch"]), threads)
    tensorboard = TensorBoardScalars(run["tensorboard_dir"])
    callback = make_epoch_callback(
        keras,
        checkpoints,
        state,
        history_rows,
        clean_model,
        settings.get("early_stopping_patience"),
        tensorboard,
        run["t0"],
        run["metrics"],
    )
    rate = rate_callback(keras, d.steps * int(settings["batch_size"]), *val_samples(d))
    callbacks = [callback, rate]  # the rate last: its epoch time holds the checkpoint
    if d.sampler is not None:  # 3D: whole volumes validated, before the epoch is judged
        batch = int(settings["batch_size"])
        callbacks.insert(0, volume_validation_callback(
            keras, d.val_reader, run["labels"], d.windows, batch, rate
        ))  # fmt: skip
    model.fit(
        train_ds,
        epochs=d.epochs,
        initial_epoch=int(state["epoch"]),
        steps_per_epoch=d.steps,
        validation_data=val_ds,
        callbacks=callbacks,
        shuffle=False,
        verbose=0,
    )
    tensorboard.close()
    if d.sampler is not None:
        log.info("patch sampling (all epochs drawn): %s", d.sampler.stats)
    found = checkpoints.latest()
    if found is None:
        raise RuntimeError("training ended without a checkpoint")
    return found[0]


def _write_outputs(clean_model, d: TrainingData, settings, run: dict, out: dict) -> None:
    state, checkpoints = run["state"], run["checkpoints"]
    history = pd.DataFrame(run["history"])
    best_weights = checkpoints.folder / f"epoch_{state['best_epoch']:04d}" / "model.weights.h5"
    clean_model.load_weights(best_weights)
    with atomic_path(out["history"]) as tmp:
        history.to_csv(tmp, index=False)
    name = Path(out["model"]).parent.name or settings["architecture"]
    title = f"{name}: best epoch {state['best_epoch']}"
    plot_curves(history, out["curves"], title, state["best_epoch"], run["metrics"])
    regions = "/".join(run["regions"][:6]) + ("/..." if len(run["regions"]) > 6 else "")
    if run["regions"]:
        best = (f"best epoch (mean val Dice {regions})", f"{state['best_epoch']} ({state['best']})")
    else:
        best = ("best epoch (val MAE)", f"{state['best_epoch']} ({-state['best']})")
    facts = {
        "name": name,
        "input shape": "x".join(str(v) for v in d.shape),
        "classes": ", ".join(run["class_names"]),
        "fold": run["fold"],
        "training cases / slices": f"{len(d.train_cases)} / {len(d.train_slices)}",
        "validation cases / slices": f"{len(d.val_cases)} / {len(d.val_slices)}",
        "epochs trained": f"{state['epoch']} of {d.epochs}" + (" (early stop)" * state["stopped"]),
        "steps per epoch": d.steps,
        best[0]: best[1],
        "precision": run["precision"],
        "GPUs": run["gpus"],
    }
    with atomic_path(out["summary"]) as tmp:
        tmp.write_text(_summary_text(clean_model, settings, facts))
    with atomic_path(out["model"]) as tmp:
        clean_model.save(tmp)
    if out.get("record"):
        write_json(out["record"], _record(state, d, run))


def _record(state: dict, d: TrainingData, run: dict) -> dict:
    """``training.json``: what the model card says about the training."""
    import tensorflow as tf

    return {
        "epochs_trained": int(state["epoch"]),
        "epochs": int(d.epochs),
        "early_stop": bool(state.get("stopped")),
        "best_epoch": int(state["best_epoch"]),
        "best": float(state["best"]),
        "selected_by": "val_dice_mean" if run["regions"] else "val_mae",
        "training_cases": len(d.train_cases),
        "validation_cases": len(d.val_cases),
        "seconds": round(time.perf_counter() - run["t0"], 1),
        "precision": run["precision"],
        "hardware": run["hardware"],
        "tensorflow": tf.__version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def train_model(
    splits_path: str,
    preprocessed_dir: str,
    settings: dict,
    out_model: str,
    out_history: str,
    out_curves: str,
    out_summary: str,
    checkpoint_dir: str,
    tensorboard_dir: str,
    labels="brats2017",
    fold: int | None = None,
    deterministic: bool = True,
    threads: int = 2,
    out_scale: str | None = None,
    windows: dict | None = None,
    out_record: str | None = None,
) -> None:
    """Train the model described by ``settings`` on the split's train cases, one output
    channel per class of the label map ``labels`` (``labels`` None: image translation, one
    linear channel regressing the z-scored target; the best epoch has the lowest val MAE).

    Writes ``out_model`` (``model.keras``, best epoch by mean validation Dice),
    ``out_history`` (CSV, one row per epoch, all epochs across resumes), ``out_curves``
    (PNG), ``out_summary`` (text: layers, parameter counts, forward FLOPs) and TensorBoard
    logs under ``tensorboard_dir``; resumes from ``checkpoint_dir`` when a matching
    checkpoint is there. ``out_scale`` (translation): a JSON of the training cases' mean
    in-brain target statistics, the scale of :func:`write_target_scale`. ``windows``
    (3D): the sliding window (``overlap``, ``gaussian``) that validation predicts with, as
    inference does. ``out_record``: ``training.json``, what the model card reports.
    """
    from tumorseg.tasks.labels import as_label_map

    t0 = time.perf_counter()
    threads = max(1, int(threads))
    log.info("training job started: %s (pid %d, %d threads)", out_model, os.getpid(), threads)
    settings = json.loads(json.dumps(settings))  # plain, private copy
    labels = None if labels is None else as_label_map(labels)
    n_classes = 0 if labels is None else labels.n_classes  # 0: regression (translation)
    gpus = start_tensorflow(threads, int(settings["seed"]), deterministic)
    d = training_data(splits_path, preprocessed_dir, settings, fold, n_classes, windows)
    checkpoints = Checkpoints(checkpoint_dir)
    checkpoints.prepare(run_fingerprint(settings, d, fold, labels))

    policy, fused = precision(settings, gpus, deterministic)
    total_steps = d.epochs * d.steps
    model = compiled_model(settings, d.n_channels, d.size, total_steps, policy, labels, fused)
    clean_model = build(settings, d.n_channels, d.size, labels)
    state, history = resume(model, checkpoints, tensorboard_dir, d.epochs)
    run = {
        "checkpoints": checkpoints,
        "state": state,
        "history": history,
        "tensorboard_dir": tensorboard_dir,
        "t0": t0,
        "metrics": history_metrics(labels),
        "labels": labels,
        "regions": [] if labels is None else list(labels.regions),
        "class_names": ["synthetic target"] if labels is None else list(labels.names),
        "fold": fold,
        "precision": policy_name(policy),
        "gpus": len(gpus),
        "hardware": hardware(gpus, threads),
    }
    if int(state["epoch"]) < d.epochs and not state.get("stopped"):
        run["state"] = _fit(model, clean_model, d, settings, run, threads)
    else:
        log.info("nothing left to train: writing the outputs from the checkpoint")
    out = {"model": out_model, "history": out_history, "curves": out_curves}
    out.update(summary=out_summary, record=out_record)
    _write_outputs(clean_model, d, settings, run, out)
    if out_scale:
        write_target_scale(preprocessed_dir, d.train_cases, out_scale)
    checkpoints.clear()
    log.info(
        "model saved to %s (epoch %d); %.0f s in all",
        out_model,
        run["state"]["best_epoch"],
        time.perf_counter() - t0,
    )
