"""Losses and validation metrics for per-pixel segmentation with one-hot labels.

Labels reach the loss one-hot encoded, shape (batch, y, x, classes), probabilities likewise.

- ``ce``: categorical cross-entropy, averaged over all pixels of the batch.
- ``dice``: soft Dice loss ``1 - mean_c (2 sum(g p) + s) / (sum(g) + sum(p) + s)`` over the
  foreground classes c = 1..n-1 (background excluded), sums taken over the whole batch
  (batch Dice, stable when a slice holds no tumour), s = 1e-5.
- ``dice_ce``: ``ce_weight * ce + dice_weight * dice``.

:class:`RegionDice` is the hard (argmax) Dice of one region of the label map (WT, TC, ET for
BraTS, ``lesion`` for binary masks, any union of classes otherwise), pooled over every pixel
seen in an epoch (all validation slices together), 1 when the region is absent from both
prediction and truth. With two classes (binary masks) cross-entropy is binary
cross-entropy and the soft Dice is that of the lesion: ``dice_ce`` with ``ce_weight: 1,
dice_weight: 0.3`` is the LGG tutorial's BCE + 0.3 Dice.

**Region-based training** (``output: regions``, nnU-Net's for BraTS): the model has one
sigmoid output per region of the label map (WT, TC, ET), the labels still reach the loss
one-hot over the classes and are summed into region targets (a region's target is the sum
of its classes' channels). :class:`RegionLoss` is ``ce_weight * BCE + dice_weight * soft
Dice`` over the regions (the mean binary cross-entropy of every region channel, and the
soft Dice of each region pooled over the batch, averaged); :class:`RegionDice` with
``output_index`` scores the region's own output thresholded at 0.5.

The optimiser and its learning-rate schedule: :mod:`tumorseg.training.optim`.
"""

from __future__ import annotations

import keras
from keras import ops

from tumorseg.errors import InputError
from tumorseg.tasks.labels import as_label_map

SMOOTH = 1e-5
EPS = 1e-7


def categorical_crossentropy(y_true, y_pred):
    """Mean over pixels of ``-sum_c g_c log p_c`` (probabilities clipped to [1e-7, 1])."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.clip(ops.cast(y_pred, "float32"), EPS, 1.0)
    return ops.mean(-ops.sum(y_true * ops.log(y_pred), axis=-1))


def soft_dice_loss(y_true, y_pred, smooth: float = SMOOTH):
    """``1 -`` mean soft Dice of the foreground classes over the whole batch."""
    return pooled_soft_dice_loss(
        ops.cast(y_true, "float32")[..., 1:], ops.cast(y_pred, "float32")[..., 1:], smooth
    )


def pooled_soft_dice_loss(targets, y_pred, smooth: float = SMOOTH):
    """``1 -`` mean over the channels of the soft Dice pooled over the whole batch."""
    targets = ops.cast(targets, "float32")
    y_pred = ops.cast(y_pred, "float32")
    axes = tuple(range(len(targets.shape) - 1))
    intersection = ops.sum(targets * y_pred, axis=axes)
    denominator = ops.sum(targets, axis=axes) + ops.sum(y_pred, axis=axes)
    return 1.0 - ops.mean((2.0 * intersection + smooth) / (denominator + smooth))


@keras.saving.register_keras_serializable(package="tumorseg")
class SegmentationLoss(keras.losses.Loss):
    """``ce_weight * cross-entropy + dice_weight * soft Dice`` (one scalar per batch)."""

    def __init__(self, ce_weight=1.0, dice_weight=1.0, name="dice_ce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)

    def call(self, y_true, y_pred):
        y_true = self.targets(y_true)
        total = 0.0
        if self.ce_weight:
            total = total + self.ce_weight * self.cross_entropy(y_true, y_pred)
        if self.dice_weight:
            total = total + self.dice_weight * self.soft_dice(y_true, y_pred)
        return total

    def targets(self, y_true):
        return y_true

    cross_entropy = staticmethod(categorical_crossentropy)
    soft_dice = staticmethod(soft_dice_loss)

    def get_config(self):
        config = super().get_config()
        config.update(ce_weight=self.ce_weight, dice_weight=self.dice_weight)
        return config


def region_targets(y_true, regions) -> object:
    """One-hot classes (..., C) -> region targets (..., R): each region's classes summed."""
    y_true = ops.cast(y_true, "float32")
    return ops.stack([sum(y_true[..., c] for c in classes) for classes in regions], axis=-1)


def binary_crossentropy(y_true, y_pred):
    """Mean over pixels and channels of the binary cross-entropy (clipped probabilities)."""
    y_pred = ops.clip(ops.cast(y_pred, "float32"), EPS, 1.0 - EPS)
    return ops.mean(-(y_true * ops.log(y_pred) + (1.0 - y_true) * ops.log(1.0 - y_pred)))


@keras.saving.register_keras_serializable(package="tumorseg")
class RegionLoss(SegmentationLoss):
    """``ce_weight * BCE + dice_weight * soft Dice`` over the regions, from one-hot classes
    (``regions``: each region's internal classes, in the model's output order)."""

    def __init__(self, regions=(), ce_weight=1.0, dice_weight=1.0, name="dice_ce", **kwargs):
        super().__init__(ce_weight, dice_weight, name=name, **kwargs)
        self.regions = [[int(c) for c in classes] for classes in regions]

    def targets(self, y_true):
        return region_targets(y_true, self.regions)

    cross_entropy = staticmethod(binary_crossentropy)
    soft_dice = staticmethod(pooled_soft_dice_loss)

    def get_config(self):
        return {**super().get_config(), "regions": self.regions}


def _weights(settings: dict) -> tuple[float, float, str]:
    kind = settings["loss"]
    if kind == "ce":
        return 1.0, 0.0, kind
    if kind == "dice":
        return 0.0, 1.0, kind
    if kind == "dice_ce":
        ce_w, dice_w = float(settings["ce_weight"]), float(settings["dice_weight"])
        if ce_w == 0 and dice_w == 0:
            raise InputError("model settings ce_weight and dice_weight are both 0")
        return ce_w, dice_w, kind
    raise InputError(f"unknown loss {kind!r}; choose ce, dice or dice_ce")


def get_loss(settings: dict, labels=None):
    """The loss named by ``settings["loss"]`` (ce, dice or dice_ce with its weights): over
    the classes, or over the regions of ``labels`` for ``output: regions`` (BCE for ce)."""
    ce_w, dice_w, kind = _weights(settings)
    if settings.get("output", "classes") == "regions":
        regions = list(as_label_map(labels).regions.values())
        return RegionLoss(regions, ce_w, dice_w, name=kind)
    return SegmentationLoss(ce_w, dice_w, name=kind)


@keras.saving.register_keras_serializable(package="tumorseg")
class RegionDice(keras.metrics.Metric):
    """Hard Dice of one region (a union of classes), pooled over all pixels seen.
    ``classes`` defaults to the BraTS region of that name (``WT``, ``TC`` or ``ET``)."""

    def __init__(self, region: str = "WT", classes=None, name=None, output_index=None, **kwargs):
        if classes is None:
            brats = as_label_map("brats2017").regions
            if region not in brats:
                raise ValueError(f"unknown region {region!r}; give its classes")
            classes = brats[region]
        super().__init__(name=name or as_label_map("brats2017").metric_name(region), **kwargs)
        self.region = region
        self.classes = tuple(int(c) for c in classes)
        self.output_index = None if output_index is None else int(output_index)
        self.intersection = self.add_variable(shape=(), initializer="zeros", name="intersection")
        self.true_sum = self.add_variable(shape=(), initializer="zeros", name="true_sum")
        self.pred_sum = self.add_variable(shape=(), initializer="zeros", name="pred_sum")

    def _region(self, tensor):
        classes = ops.argmax(tensor, axis=-1)
        mask = ops.zeros_like(classes, dtype="bool")
        for c in self.classes:
            mask = ops.logical_or(mask, ops.equal(classes, c))
        return ops.cast(mask, "float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth = self._region(y_true)
        if self.output_index is None:
            pred = self._region(y_pred)
        else:  # a region model: the region's own sigmoid output above 0.5
            pred = ops.cast(ops.cast(y_pred[..., self.output_index], "float32") > 0.5, "float32")
        self.intersection.assign_add(ops.sum(truth * pred))
        self.true_sum.assign_add(ops.sum(truth))
        self.pred_sum.assign_add(ops.sum(pred))

    def result(self):
        denominator = self.true_sum + self.pred_sum
        return ops.where(
            denominator > 0, 2.0 * self.intersection / ops.maximum(denominator, 1.0), 1.0
        )

    def reset_state(self):
        for v in (self.intersection, self.true_sum, self.pred_sum):
            v.assign(0.0)

    def get_config(self):
        return {
            "region": self.region,
            "classes": list(self.classes),
            "name": self.name,
            "output_index": self.output_index,
        }


def region_dice_metrics(labels="brats2017", regions_output: bool = False) -> list[RegionDice]:
    """Fresh Dice metrics of every region of the label map (BraTS: ``dice_wt``,
    ``dice_tc``, ``dice_et``); ``regions_output``: of a region model's outputs."""
    labels = as_label_map(labels)
    return [
        RegionDice(region, classes, labels.metric_name(region), index if regions_output else None)
        for index, (region, classes) in enumerate(labels.regions.items())
    ]


# --- image translation: regression losses and metrics ------------------------------------


def _data_range(y_true):
    """Per-slice intensity range of the real image (z-scores have no fixed range)."""
    axes = tuple(range(1, len(y_true.shape)))
    rng = ops.max(y_true, axis=axes) - ops.min(y_true, axis=axes)
    return ops.maximum(rng, EPS)


def slice_ssim(y_true, y_pred):
    """Mean SSIM of the slices of a batch (Gaussian window 11, sigma 1.5, as
    ``tf.image.ssim``), each slice with the data range of its real image."""
    import tensorflow as tf

    y_true = tf.cast(y_true, tf.float32)
    y_pred = tf.cast(y_pred, tf.float32)
    rng = _data_range(y_true)
    lo = tf.reduce_min(y_true, axis=(1, 2, 3), keepdims=True)
    scale = rng[:, None, None, None]
    return tf.reduce_mean(tf.image.ssim((y_true - lo) / scale, (y_pred - lo) / scale, 1.0))


@keras.saving.register_keras_serializable(package="tumorseg")
class TranslationLoss(keras.losses.Loss):
    """``mae`` (the image-translation tutorial's choice), ``mse``, or ``mae_ssim``
    (MAE + (1 - SSIM), SSIM per slice with the real slice's data range)."""

    def __init__(self, kind="mae", name=None, **kwargs):
        if kind not in ("mae", "mse", "mae_ssim"):
            raise InputError(f"unknown translation loss {kind!r}; choose mae, mse or mae_ssim")
        super().__init__(name=name or kind, **kwargs)
        self.kind = kind

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        if self.kind == "mse":
            return ops.mean(ops.square(y_true - y_pred))
        mae = ops.mean(ops.abs(y_true - y_pred))
        if self.kind == "mae":
            return mae
        return mae + (1.0 - slice_ssim(y_true, y_pred))

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind)
        return config


def translation_metrics() -> list:
    """Validation MAE and SSIM of every epoch (names ``mae``, ``ssim``)."""
    return [
        keras.metrics.MeanAbsoluteError(name="mae"),
        keras.metrics.MeanMetricWrapper(slice_ssim, name="ssim"),
    ]
