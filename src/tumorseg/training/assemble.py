"""The model that is trained: the network of the settings with its loss, optimiser,
schedule and validation metrics, for a label map or for image translation."""

from __future__ import annotations


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
        regions = settings.get("output", "classes") == "regions"
        loss = losses.get_loss(settings, labels)
        metrics = losses.region_dice_metrics(labels, regions_output=regions)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return model


def build(settings: dict, n_channels: int, size: int, labels, policy=None, fused_batch_norm=False):
    """The uncompiled model: softmax over the label map's classes, a sigmoid per region
    (``output: regions``), or (``labels`` None) one linear output channel;
    ``fused_batch_norm`` for the model that is trained (the saved one is built without)."""
    from tumorseg.tasks.labels import as_label_map
    from tumorseg.training import models

    if labels is None:
        n_classes, output = 1, "linear"
    elif settings.get("output", "classes") == "regions":
        n_classes, output = len(as_label_map(labels).regions), "sigmoid"
    else:
        n_classes, output = as_label_map(labels).n_classes, "softmax"
    return models.build_model(
        settings, n_channels, n_classes, size, policy, output, fused_batch_norm
    )
