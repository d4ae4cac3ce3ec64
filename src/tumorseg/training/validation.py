"""The validation of a 3D model as the model will be used: every validation volume predicted
whole by the sliding window of inference (the same window starts, the same Gaussian
weights: :func:`tumorseg.training.sliding_window.predict_volume`), the argmax scored per
region of the label map. The Dice is pooled over every voxel of every validation volume,
as :class:`tumorseg.training.losses.RegionDice` pools over the pixels of 2D validation
slices, and is 1 for a region absent from prediction and truth alike; the validation loss
is the model's loss of each whole-volume prediction, averaged over the volumes. Keras runs
no validation of its own for a 3D model: the epoch chosen is the one whose whole-volume
predictions score best, and each window is predicted once.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from tumorseg.tasks.labels import as_label_map
from tumorseg.training.sliding_window import predict_volume

log = logging.getLogger("tumorseg.train")  # one logger for every part of the training job

#: the sliding window of inference when the config gives none (config ``predict``)
DEFAULT_WINDOWS = {"overlap": 0.5, "gaussian": True}


def validate_volumes(
    predict_fn, reader, labels, windows: dict, batch_size: int, loss_fn=None, n_outputs=None
) -> dict[str, float]:
    """The validation scores of the whole volumes of ``reader`` (a
    :class:`tumorseg.training.patches.PatchReader`), predicted by ``predict_fn`` window by
    window as inference predicts them: the Dice of every region (``{metric name: Dice}``,
    e.g. ``dice_wt``) and, with ``loss_fn(one-hot truth, probabilities)``, ``loss``, the
    mean over the volumes of the loss of each whole-volume prediction. ``n_outputs``: the
    model's output channels (default: the classes); a region model's (one per region) are
    thresholded and painted into classes as inference does."""
    labels = as_label_map(labels)
    n_outputs = reader.n_classes if n_outputs is None else int(n_outputs)
    decode = (
        (lambda p: p.argmax(axis=-1))
        if n_outputs == reader.n_classes
        else labels.regions_to_classes
    )
    regions = {r: np.asarray(c, np.int64) for r, c in labels.regions.items()}
    inter, total = dict.fromkeys(regions, 0), dict.fromkeys(regions, 0)
    losses = []
    for image, truth in zip(reader.images, reader.labels, strict=True):
        probs = predict_volume(
            predict_fn, image, reader.patch_xyz, n_outputs,
            overlap=float(windows["overlap"]), gaussian=bool(windows["gaussian"]),
            batch_size=batch_size,
        )  # fmt: skip
        truth = np.asarray(truth)
        if loss_fn is not None:
            onehot = np.eye(reader.n_classes, dtype=np.float32)[truth]
            losses.append(float(loss_fn(onehot[None], probs[None])))
        pred = decode(probs)
        for region, classes in regions.items():
            p, g = np.isin(pred, classes), np.isin(truth, classes)
            inter[region] += int(np.count_nonzero(p & g))
            total[region] += int(np.count_nonzero(p)) + int(np.count_nonzero(g))
    scores = {"loss": float(np.mean(losses))} if losses else {}
    for r in regions:
        scores[labels.metric_name(r)] = 2.0 * inter[r] / total[r] if total[r] else 1.0
    return scores


def volume_validation_callback(keras, reader, labels, windows: dict, batch_size: int, rate=None):
    """A callback that validates the model being trained with :func:`validate_volumes`
    (its compiled loss included) at the end of each epoch and puts the scores into the
    epoch's logs (``val_loss``, ``val_<metric>``), before the callbacks that select the best
    epoch read them; ``rate`` (the :func:`tumorseg.training.epoch_rate.rate_callback`)
    is told when validation starts and ends, as Keras's own validation would."""

    class VolumeValidation(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is None:
                return
            if rate is not None:
                rate.on_test_begin()
            t0 = time.perf_counter()
            model = self.model

            def predict_fn(tiles):
                return np.asarray(model(tiles, training=False), dtype=np.float32)

            scores = validate_volumes(
                predict_fn, reader, labels, windows, batch_size, model.loss,
                int(model.output_shape[-1]),
            )  # fmt: skip
            if rate is not None:
                rate.on_test_end()
            logs.update({f"val_{name}": value for name, value in scores.items()})
            log.info(
                "epoch %d: whole-volume validation (sliding window, overlap %g, %s): %s in %.1f s",
                epoch + 1,
                float(windows["overlap"]),
                "Gaussian" if windows["gaussian"] else "uniform",
                " ".join(f"{k} {v:.4f}" for k, v in scores.items()),
                time.perf_counter() - t0,
            )

    return VolumeValidation()
