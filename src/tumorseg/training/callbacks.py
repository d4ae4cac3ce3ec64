"""What happens at the end of each epoch: the mean validation Dice (or MAE) that selects
the best epoch, early stopping, the checkpoint, TensorBoard's scalars and the log line."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

log = logging.getLogger("tumorseg.train")  # one logger for every part of the training job


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


class TensorBoardScalars:
    """Epoch scalars in TensorBoard's format (``train/`` and ``validation/`` runs, tags
    ``epoch_<metric>`` as Keras writes them, step = epoch - 1), written with TensorFlow's own
    summary ops after :func:`make_epoch_callback` has added ``val_dice_mean`` and the
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


def make_epoch_callback(
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
