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

import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tumorseg.io.atomic import atomic_path
from tumorseg.io.tables import read_json, write_json
from tumorseg.report.figures import plot_curves
from tumorseg.resources import RUNTIME_KEYS
from tumorseg.threads import hold_tensorflow
from tumorseg.training.memory import estimate_mem_mb
from tumorseg.training.precision import policy_name, training_policy

log = logging.getLogger("tumorseg.train")


#: validation metrics of image translation, and the one that selects the best epoch
TRANSLATION_METRICS = ("mae", "ssim")


def history_metrics(labels) -> tuple[str, ...]:
    """The per-region validation Dice names of a label map (BraTS: dice_wt, dice_tc,
    dice_et); for translation (``labels`` None) MAE and SSIM."""
    from tumorseg.tasks.labels import as_label_map

    if labels is None:
        return TRANSLATION_METRICS
    labels = as_label_map(labels)
    return tuple(labels.metric_name(r) for r in labels.regions)


def configure_tensorflow(threads: int) -> list:
    """Set TF's thread pools (if TF has not started yet) and GPU memory growth.

    Returns the visible GPUs (``CUDA_VISIBLE_DEVICES`` is honoured by TensorFlow itself).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    hold_tensorflow(threads, inter_op=min(threads, 2))
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass
    log.info(
        "devices: %s (CUDA_VISIBLE_DEVICES=%s); %d CPU threads",
        ", ".join(d.name for d in tf.config.list_physical_devices()) or "none",
        os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
        threads,
    )
    return gpus


def _fingerprint(settings: dict, extra: dict) -> str:
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


class TensorBoardScalars:
    """Epoch scalars in TensorBoard's format (``train/`` and ``validation/`` runs, tags
    ``epoch_<metric>`` as Keras writes them, step = epoch - 1), written with TensorFlow's own
    summary ops after :func:`_make_epoch_callback` has added ``val_dice_mean`` and the
    learning rate, so they hold the losses, Dice scores and learning rate of ``history.csv``.
    Kept instead of ``keras.callbacks.TensorBoard``, which would also write the graph and
    need to run after that callback. View with ``tensorboard --logdir results/models``
    (``tensorboard`` is pinned in requirements.txt and envs/tensorflow.yaml)."""

    def __init__(self, folder: str | Path):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        self._tf = tf
        self._writers = {
            run: tf.summary.create_file_writer(str(Path(folder) / run))
            for run in ("train", "validation")
        }
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        )

    def write(self, epoch: int, logs: dict) -> None:
        tf = self._tf
        for key, value in logs.items():
            if value is None:
                continue
            run, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writers[run].as_default():
                tf.summary.write(
                    f"epoch_{tag}",
                    tf.constant(float(value), tf.float32),
                    step=epoch,
                    metadata=self._metadata,
                )
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


def _make_epoch_callback(
    keras, checkpoints, state, history_rows, clean_model, patience, tensorboard, t0, metrics
):
    class EpochEnd(keras.callbacks.Callback):
        """Adds val_dice_mean and the learning rate to the logs, tracks the best epoch,
        early stopping, and writes the epoch checkpoint."""

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            if metrics == TRANSLATION_METRICS:  # lower validation MAE is better
                value = logs.get("val_mae")
                value = None if value is None else -float(value)
            else:  # higher mean validation Dice is better
                val = [logs.get(f"val_{m}") for m in metrics]
                value = float(sum(val) / len(val)) if all(v is not None for v in val) else None
                logs["val_dice_mean"] = value
            optimizer = self.model.optimizer
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            row = {"epoch": epoch + 1}
            row.update({k: float(v) for k, v in logs.items() if v is not None})
            row["seconds"] = round(time.perf_counter() - self._start, 3)
            history_rows.append(row)
            tensorboard.write(epoch, logs)
            improved = value is not None and (state["best"] is None or value > state["best"])
            if improved or state["best_epoch"] is None:
                state["best"] = value
                state["best_epoch"] = epoch + 1
                state["wait"] = 0
                clean_model.set_weights(self.model.get_weights())
                best = clean_model
            else:
                state["wait"] += 1
                best = None
            state["epoch"] = epoch + 1
            if patience is not None and state["wait"] >= patience:
                log.info("early stopping: no improvement in %d epochs", state["wait"])
                state["stopped"] = True
                self.model.stop_training = True
            checkpoints.save(state, pd.DataFrame(history_rows), self.model, best)
            shown = ("loss", "val_loss", *(f"val_{m}" for m in metrics[:8]), "val_dice_mean")
            shown = shown if metrics != TRANSLATION_METRICS else shown[:-1]
            log.info(
                "epoch %d/%d: %.1f s; %s; best epoch %s; %.0f s so far",
                epoch + 1,
                self.params["epochs"],
                row["seconds"],
                " ".join(f"{k} {row[k]:.4f}" for k in shown if k in row),
                state["best_epoch"],
                time.perf_counter() - t0,
            )

    return EpochEnd()


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


def compiled_model(
    settings: dict,
    n_channels: int,
    size: int,
    total_steps: int,
    policy: str | None,
    labels="brats2017",
    fused_batch_norm: bool = True,
):
    """The model of ``settings`` with one output per class of ``labels``, compiled with its
    loss, optimizer, schedule and per-region Dice metrics; ``labels`` None: image
    translation (one linear output, a regression loss, validation MAE and SSIM).
    ``fused_batch_norm``: train with :class:`tumorseg.training.fused_norm.FusedBatchNormalization`
    (:func:`tumorseg.training.fused_norm.use_fused` says when)."""
    import keras

    from tumorseg.training import losses
    from tumorseg.training.optim import get_optimizer

    model = build(settings, n_channels, size, labels, policy, fused_batch_norm)
    optimizer = get_optimizer(settings, total_steps)
    if policy == "mixed_float16":  # bfloat16 has float32's range: no loss scaling
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    if labels is None:
        loss, metrics = losses.TranslationLoss(settings["loss"]), losses.translation_metrics()
    else:
        loss, metrics = losses.get_loss(settings), losses.region_dice_metrics(labels)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return model


def build(settings: dict, n_channels: int, size: int, labels, policy=None, fused_batch_norm=False):
    """The uncompiled model: softmax over the label map's classes, or (``labels`` None)
    one linear output channel; ``fused_batch_norm`` for the model that is trained (the
    saved one is built without)."""
    from tumorseg.tasks.labels import as_label_map
    from tumorseg.training import models

    n_classes = 1 if labels is None else as_label_map(labels).n_classes
    output = "linear" if labels is None else "softmax"
    return models.build_model(
        settings, n_channels, n_classes, size, policy, output, fused_batch_norm
    )


@dataclass
class TrainingData:
    """The slices, readers and batch plan of one training run."""

    train_cases: list[str]
    val_cases: list[str]
    train_slices: pd.DataFrame
    val_slices: pd.DataFrame
    train_reader: object
    val_reader: object
    shape: tuple[int, ...]  # (y, x, C) slices, or (z, y, x, C) patches
    steps: int
    epochs: int
    sampler: object = None  # 3D: the tumour-fraction patch sampler

    @property
    def n_channels(self) -> int:
        return int(self.shape[-1])

    @property
    def size(self):
        """The model's input size: the slice size, or the (z, y, x) patch size."""
        return tuple(self.shape[:3]) if self.sampler is not None else int(self.shape[0])


def _patch_data(splits_path, preprocessed_dir, settings, fold, n_classes) -> TrainingData:
    """3D training (unet3d): patches of the training volumes drawn with a tumour-fraction
    floor, validation on tiles covering the validation volumes."""
    import numpy as np

    from tumorseg.training import data, patches

    train_cases, val_cases = data.read_split(splits_path, fold)
    train_slices = data.read_slices(preprocessed_dir, train_cases, n_classes)
    val_slices = data.read_slices(preprocessed_dir, val_cases, n_classes)
    patch = [int(v) for v in settings["patch_size"]]  # (x, y, z)
    train_reader = patches.PatchReader(preprocessed_dir, train_cases, n_classes, patch)
    val_reader = patches.PatchReader(preprocessed_dir, val_cases, n_classes, patch)
    sampler = patches.PatchSampler(
        train_reader,
        patch,
        float(settings["min_tumour_fraction"]),
        float(settings["unconstrained_share"]),
        int(settings["patch_retries"]),
        int(settings["seed"]),
    )
    first = np.load(Path(preprocessed_dir) / train_cases[0] / "image.npy", mmap_mode="r")
    batch = int(settings["batch_size"])
    per_case = math.ceil(first.shape[0] / patch[2])  # patches covering a volume's depth
    steps = settings.get("steps_per_epoch") or math.ceil(len(train_cases) * per_case / batch)
    shape = (patch[2], patch[1], patch[0], int(first.shape[-1]))
    log.info(
        "3D training on %d cases, validating on %d; patches %s (x, y, z), %d epochs of %d "
        "batches of %d; memory estimate %d MB",
        len(train_cases),
        len(val_cases),
        "x".join(map(str, patch)),
        int(settings["epochs"]),
        steps,
        batch,
        estimate_mem_mb(settings, shape[-1], n_classes),
    )
    return TrainingData(
        train_cases, val_cases, train_slices, val_slices, train_reader, val_reader, shape,
        steps, int(settings["epochs"]), sampler,
    )  # fmt: skip


def _training_data(splits_path, preprocessed_dir, settings, fold, n_classes) -> TrainingData:
    from tumorseg.training import data

    if settings["architecture"] == "unet3d":
        return _patch_data(splits_path, preprocessed_dir, settings, fold, n_classes)

    train_cases, val_cases = data.read_split(splits_path, fold)
    train_slices = data.read_slices(preprocessed_dir, train_cases, n_classes)
    val_slices = data.read_slices(preprocessed_dir, val_cases, n_classes)
    train_reader = data.SliceReader(preprocessed_dir, train_cases, n_classes)
    val_reader = data.SliceReader(preprocessed_dir, val_cases, n_classes)
    shape = (train_reader.height, train_reader.width, train_reader.channels)
    if (val_reader.height, val_reader.width, val_reader.channels) != shape:
        raise ValueError("training and validation slices differ in shape")
    if shape[0] != shape[1]:
        raise ValueError(f"slices must be square, found {shape[0]}x{shape[1]}")
    batch = int(settings["batch_size"])
    steps = settings.get("steps_per_epoch") or math.ceil(len(train_slices) / batch)
    epochs = int(settings["epochs"])
    log.info(
        "training on %d cases (%d slices), validating on %d cases (%d slices); "
        "%d epochs of %d batches of %d",
        len(train_cases),
        len(train_slices),
        len(val_cases),
        len(val_slices),
        epochs,
        steps,
        batch,
    )
    return TrainingData(
        train_cases, val_cases, train_slices, val_slices, train_reader, val_reader, shape,
        steps, epochs,
    )  # fmt: skip


def _run_fingerprint(settings, d: TrainingData, fold, labels) -> str:
    return _fingerprint(
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
        },
    )


def _resume(model, checkpoints, tensorboard_dir, epochs) -> tuple[dict, list[dict]]:
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


def _datasets(d: TrainingData, settings: dict, start_epoch: int, threads: int):
    """The training and validation datasets: slices, or 3D patches and tiles."""
    from tumorseg.training import data, patches

    batch = int(settings["batch_size"])
    if d.sampler is not None:
        train = patches.make_patch_train_dataset(
            d.train_reader, d.sampler, settings, d.steps, d.epochs, start_epoch, threads
        )
        return train, patches.make_patch_val_dataset(d.val_reader, batch, threads)
    train = data.make_train_dataset(
        d.train_reader, d.train_slices, settings, d.steps, d.epochs, start_epoch, threads
    )
    return train, data.make_val_dataset(d.val_reader, d.val_slices, batch, threads)


def _val_samples(d: TrainingData) -> tuple[int, str]:
    """The validation samples of an epoch and their unit (slices, or 3D tiles)."""
    if d.sampler is None:
        return len(d.val_slices), "slices"
    from tumorseg.training.patches import validation_index

    return len(validation_index(d.val_reader)[0]), "patches"


def _fit(model, clean_model, d: TrainingData, settings, run: dict, threads: int) -> dict:
    """Train from ``run["state"]`` to the last epoch; returns the final state."""
    import keras

    from tumorseg.training.epoch_rate import rate_callback

    checkpoints, state, history_rows = run["checkpoints"], run["state"], run["history"]
    train_ds, val_ds = _datasets(d, settings, int(state["epoch"]), threads)
    tensorboard = TensorBoardScalars(run["tensorboard_dir"])
    callback = _make_epoch_callback(
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
    rate = rate_callback(keras, d.steps * int(settings["batch_size"]), *_val_samples(d))
    model.fit(
        train_ds,
        epochs=d.epochs,
        initial_epoch=int(state["epoch"]),
        steps_per_epoch=d.steps,
        validation_data=val_ds,
        callbacks=[callback, rate],  # the rate last: its epoch time holds the checkpoint
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


def _start_tensorflow(threads: int, seed: int, deterministic: bool) -> list:
    """Configure TensorFlow (:func:`configure_tensorflow`), seed it and, with
    ``deterministic``, switch on its op determinism; returns the visible GPUs."""
    gpus = configure_tensorflow(threads)
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
        log.info("TensorFlow op determinism on (seed %d)", seed)
    return gpus


def _precision(settings: dict, gpus: list, deterministic: bool) -> tuple[str | None, bool]:
    """The dtype policy (:func:`tumorseg.training.precision.training_policy`) and fused batch
    normalisation (:func:`tumorseg.training.fused_norm.use_fused`) of a training job; both
    logged."""
    from tumorseg.training.fused_norm import use_fused

    policy = training_policy(bool(settings.get("mixed_precision")), len(gpus))
    fused = use_fused(len(gpus), deterministic)
    log.info(
        "batch normalisation in training: %s",
        "TensorFlow's fused kernel" if fused else "Keras's layer (op determinism on a GPU)",
    )
    return policy, fused


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
) -> None:
    """Train the model described by ``settings`` on the split's train cases, one output
    channel per class of the label map ``labels`` (``labels`` None: image translation, one
    linear channel regressing the z-scored target; the best epoch has the lowest val MAE).

    Writes ``out_model`` (``model.keras``, best epoch by mean validation Dice),
    ``out_history`` (CSV, one row per epoch, all epochs across resumes), ``out_curves``
    (PNG), ``out_summary`` (text: layers, parameter counts, forward FLOPs) and TensorBoard
    logs under ``tensorboard_dir``; resumes from ``checkpoint_dir`` when a matching
    checkpoint is there. ``out_scale`` (translation): a JSON of the training cases' mean
    in-brain target statistics, the scale of :func:`write_target_scale`.
    """
    from tumorseg.tasks.labels import as_label_map

    t0 = time.perf_counter()
    threads = max(1, int(threads))
    log.info("training job started: %s (pid %d, %d threads)", out_model, os.getpid(), threads)
    settings = json.loads(json.dumps(settings))  # plain, private copy
    labels = None if labels is None else as_label_map(labels)
    n_classes = 0 if labels is None else labels.n_classes  # 0: regression (translation)
    gpus = _start_tensorflow(threads, int(settings["seed"]), deterministic)
    d = _training_data(splits_path, preprocessed_dir, settings, fold, n_classes)
    checkpoints = Checkpoints(checkpoint_dir)
    checkpoints.prepare(_run_fingerprint(settings, d, fold, labels))

    policy, fused = _precision(settings, gpus, deterministic)
    total_steps = d.epochs * d.steps
    model = compiled_model(settings, d.n_channels, d.size, total_steps, policy, labels, fused)
    clean_model = build(settings, d.n_channels, d.size, labels)
    state, history = _resume(model, checkpoints, tensorboard_dir, d.epochs)
    run = {
        "checkpoints": checkpoints,
        "state": state,
        "history": history,
        "tensorboard_dir": tensorboard_dir,
        "t0": t0,
        "metrics": history_metrics(labels),
        "regions": [] if labels is None else list(labels.regions),
        "class_names": ["synthetic target"] if labels is None else list(labels.names),
        "fold": fold,
        "precision": policy_name(policy),
        "gpus": len(gpus),
    }
    if int(state["epoch"]) < d.epochs and not state.get("stopped"):
        run["state"] = _fit(model, clean_model, d, settings, run, threads)
    else:
        log.info("nothing left to train: writing the outputs from the checkpoint")
    out = {"model": out_model, "history": out_history, "curves": out_curves}
    _write_outputs(clean_model, d, settings, run, {**out, "summary": out_summary})
    if out_scale:
        write_target_scale(preprocessed_dir, d.train_cases, out_scale)
    checkpoints.clear()
    log.info(
        "model saved to %s (epoch %d); %.0f s in all",
        out_model,
        run["state"]["best_epoch"],
        time.perf_counter() - t0,
    )


def write_target_scale(preprocessed_dir: str, cases: list[str], out_path: str) -> dict:
    """The training data's target intensity scale: the mean over the training cases of
    their in-brain target mean and SD (from their geometry records). Prediction maps
    z-scores back with it when ``translation.rescale_output`` is on."""
    from tumorseg.io.grid import load_geometry

    stats = [
        load_geometry(Path(preprocessed_dir) / c / "geometry.json")["target_normalisation"]
        for c in cases
    ]
    scale = {
        "mean": float(sum(s["mean"] for s in stats) / len(stats)),
        "std": float(sum(s["std"] for s in stats) / len(stats)),
        "cases": len(stats),
    }
    write_json(out_path, scale)
    return scale
