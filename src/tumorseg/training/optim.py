"""Optimisers (Adam, SGD with momentum) and learning-rate schedules (constant, cosine,
one-cycle): :func:`get_optimizer`."""

from __future__ import annotations

import math

import keras
from keras import ops

from tumorseg.errors import InputError


@keras.saving.register_keras_serializable(package="tumorseg")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle learning rate (Smith 2018, as in fastai/PyTorch ``OneCycleLR``).

    Cosine warm-up from ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of
    ``total_steps``, then cosine annealing to ``max_lr / div_factor / final_div_factor``.

    Not Keras's ``CosineDecay(..., warmup_target=max_lr, warmup_steps=...)``: its decay phase
    is the same curve, but its warm-up is linear, while one-cycle's rises along a half cosine
    (slower at first: a quarter into the warm-up 0.0018 instead of 0.0028 for ``max_lr``
    0.01), so the shapes differ (``tests/test_models.py`` checks both).
    """

    def __init__(self, max_lr, total_steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
        self.max_lr = float(max_lr)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = max(1.0, self.pct_start * self.total_steps)
        rest = max(1.0, self.total_steps - warm)
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        t_up = ops.clip(step / warm, 0.0, 1.0)
        t_down = ops.clip((step - warm) / rest, 0.0, 1.0)
        up = initial + (self.max_lr - initial) * (1.0 - ops.cos(math.pi * t_up)) / 2.0
        down = final + (self.max_lr - final) * (1.0 + ops.cos(math.pi * t_down)) / 2.0
        return ops.where(step < warm, up, down)

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


def learning_rate(settings: dict, total_steps: int):
    """The schedule named by ``settings["schedule"]`` peaking at ``learning_rate``."""
    lr = float(settings["learning_rate"])
    kind = settings["schedule"]
    if kind == "constant":
        return lr
    if kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, int(total_steps)))
    if kind == "one_cycle":
        return OneCycle(lr, max(1, int(total_steps)))
    raise InputError(f"unknown learning-rate schedule {kind!r}; choose constant, cosine, one_cycle")


def get_optimizer(settings: dict, total_steps: int) -> keras.optimizers.Optimizer:
    """Adam, or SGD with ``momentum``, with the configured schedule over ``total_steps``."""
    lr = learning_rate(settings, total_steps)
    kind = settings["optimizer"]
    if kind == "adam":
        return keras.optimizers.Adam(lr)
    if kind == "sgd":
        return keras.optimizers.SGD(lr, momentum=float(settings["momentum"]))
    raise InputError(f"unknown optimizer {kind!r}; choose adam or sgd")
