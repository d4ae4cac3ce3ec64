"""Segmentation models: a 2D U-Net and a plain (dilated) convolutional baseline.

Both map a slice of shape (size, size, channels) to per-pixel class probabilities
(softmax over the classes, float32 even under mixed precision). The model that is saved
has only built-in Keras layers, so it loads with
``keras.models.load_model(path, compile=False, safe_mode=True)`` without this package; the
one that is trained may have :class:`tumorseg.training.fused_norm.FusedBatchNormalization` instead
of Keras's (``fused_batch_norm``), with the same weights.
Every random initialiser and dropout layer gets its own seed derived from
``settings["seed"]``: the same settings build the same weights.
"""

from __future__ import annotations

import itertools
import math

import keras
from keras import layers

from tumorseg.errors import InputError
from tumorseg.training.fused_norm import FusedBatchNormalization


class _Seeds:
    """Distinct, reproducible integer seeds for successive layers."""

    def __init__(self, seed: int):
        self._counter = itertools.count()
        self._base = int(seed) * 1000

    def __call__(self) -> int:
        return self._base + next(self._counter)


#: layer classes of the 2D and the 3D networks
_LAYERS = {
    2: {
        "conv": layers.Conv2D,
        "pool": layers.MaxPooling2D,
        "upconv": layers.Conv2DTranspose,
        "up": layers.UpSampling2D,
    },
    3: {
        "conv": layers.Conv3D,
        "pool": layers.MaxPooling3D,
        "upconv": layers.Conv3DTranspose,
        "up": layers.UpSampling3D,
    },
}


def _conv_block(x, filters, settings, seeds, dtype, name, dilation=1, n_convs=2, nd=2, norm=None):
    bn = bool(settings["batch_norm"])
    norm = norm or layers.BatchNormalization
    for i in range(n_convs):
        x = _LAYERS[nd]["conv"](
            filters,
            int(settings["kernel_size"]),
            padding="same",
            dilation_rate=dilation,
            use_bias=not bn,
            kernel_initializer=keras.initializers.HeNormal(seed=seeds()),
            dtype=dtype,
            name=f"{name}_conv{i + 1}",
        )(x)
        if bn:
            x = norm(dtype=dtype, name=f"{name}_bn{i + 1}")(x)
        x = layers.Activation("relu", dtype=dtype, name=f"{name}_relu{i + 1}")(x)
    return x


def _unet(inputs, settings, n_classes, seeds, dtype, nd=2, norm=None):
    """The U-Net of ``settings``, 2D (slices) or 3D (``nd`` 3: patches); the same layer
    names and seed order in both."""
    depth = int(settings["depth"])
    base = int(settings["base_filters"])
    kinds = _LAYERS[nd]
    x = inputs
    skips = []
    for level in range(depth):
        x = _conv_block(x, base * 2**level, settings, seeds, dtype, f"enc{level}", nd=nd, norm=norm)
        skips.append(x)
        x = kinds["pool"](2, dtype=dtype, name=f"enc{level}_pool")(x)
    x = _conv_block(x, base * 2**depth, settings, seeds, dtype, "bottleneck", nd=nd, norm=norm)
    if settings["dropout"] > 0:
        x = layers.Dropout(
            float(settings["dropout"]), seed=seeds(), dtype=dtype, name="bottleneck_dropout"
        )(x)
    for level in reversed(range(depth)):
        filters = base * 2**level
        if settings["upsampling"] == "transpose":
            x = kinds["upconv"](
                filters,
                2,
                strides=2,
                kernel_initializer=keras.initializers.HeNormal(seed=seeds()),
                dtype=dtype,
                name=f"dec{level}_upconv",
            )(x)
        else:
            up = {"interpolation": "nearest"} if nd == 2 else {}
            x = kinds["up"](2, **up, dtype=dtype, name=f"dec{level}_up")(x)
            x = kinds["conv"](
                filters,
                2,
                padding="same",
                kernel_initializer=keras.initializers.HeNormal(seed=seeds()),
                dtype=dtype,
                name=f"dec{level}_upconv",
            )(x)
        x = layers.Concatenate(dtype=dtype, name=f"dec{level}_concat")([skips[level], x])
        x = _conv_block(x, filters, settings, seeds, dtype, f"dec{level}", nd=nd, norm=norm)
    return x


def _cnn(inputs, settings, seeds, dtype, norm=None):
    kernels = [int(k) for k in settings["kernels"]]
    rates = [int(r) for r in settings["dilation_rates"]]
    if len(rates) == 1:
        rates = rates * len(kernels)
    if len(rates) != len(kernels):
        raise InputError(
            f"model setting dilation_rates has {len(rates)} entries but kernels has "
            f"{len(kernels)}; give one rate per layer or a single rate"
        )
    x = inputs
    for i, (filters, rate) in enumerate(zip(kernels, rates, strict=True)):
        x = _conv_block(
            x, filters, settings, seeds, dtype, f"layer{i}", dilation=rate, n_convs=1, norm=norm
        )
        if settings["dropout"] > 0:
            x = layers.Dropout(
                float(settings["dropout"]), seed=seeds(), dtype=dtype, name=f"layer{i}_dropout"
            )(x)
    return x


def _input_shape(settings: dict, input_size, n_channels: int) -> tuple[tuple, int]:
    """The model's input shape and dimensionality: (size, size, C) slices, or for
    ``unet3d`` (pz, py, px, C) patches (``input_size`` a (z, y, x) triple); a U-Net needs
    every size divisible by ``2**depth``."""
    arch = settings["architecture"]
    nd = 3 if arch == "unet3d" else 2
    if input_size is None:
        sizes = (None,) * nd
    else:
        sizes = tuple(int(v) for v in input_size) if nd == 3 else (int(input_size),) * 2
    factor = 2 ** int(settings["depth"])
    if arch != "cnn" and any(v is not None and v % factor for v in sizes):
        what = "patches" if nd == 3 else "slices"
        raise InputError(
            f"{what} of {'x'.join(str(v) for v in sizes)} voxels cannot pass a U-Net of depth "
            f"{settings['depth']}: every size must be divisible by {factor}; lower `depth` "
            "or change the crop/downsampling (or the patch size) so the sizes are multiples"
        )
    return (*sizes, n_channels), nd


def build_model(
    settings: dict,
    n_channels: int,
    n_classes: int = 4,
    input_size: int | None = None,
    dtype_policy: str | None = None,
    output: str = "softmax",
    fused_batch_norm: bool = False,
) -> keras.Model:
    """Build the model described by ``settings`` (one entry of config ``models``).

    ``input_size`` fixes the slice size, or for ``unet3d`` the (z, y, x) patch size (None:
    any size; a U-Net needs sizes divisible by ``2**depth``). ``dtype_policy`` (e.g.
    ``"mixed_float16"``) applies to every layer but the final activation, which always
    computes in float32. ``output``: ``softmax`` (class
    probabilities, segmentation), ``sigmoid`` (one probability per region, region-based
    training) or ``linear`` (``n_classes`` regression channels, image
    translation). ``fused_batch_norm``: batch normalisation by
    :class:`tumorseg.training.fused_norm.FusedBatchNormalization` (for the model that is trained on
    the CPU; the same weights as Keras's layer, which the saved model has). The model is
    not compiled.
    """
    if output not in ("softmax", "sigmoid", "linear"):
        raise InputError(f"unknown model output {output!r}; choose softmax, sigmoid or linear")
    arch = settings["architecture"]
    shape, nd = _input_shape(settings, input_size, n_channels)
    dtype = dtype_policy  # None: the global policy (float32 unless changed)
    seeds = _Seeds(settings["seed"])
    norm = FusedBatchNormalization if fused_batch_norm else layers.BatchNormalization
    inputs = keras.Input(shape=shape, name="image")
    if arch in ("unet", "unet3d"):
        x = _unet(inputs, settings, n_classes, seeds, dtype, nd=nd, norm=norm)
    elif arch == "cnn":
        x = _cnn(inputs, settings, seeds, dtype, norm=norm)
    else:
        raise InputError(f"unknown model architecture {arch!r}; choose unet, cnn or unet3d")
    x = _LAYERS[nd]["conv"](
        n_classes,
        1,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seeds()),
        dtype=dtype,
        name="logits",
    )(x)
    name = "synthetic" if output == "linear" else "probabilities"
    outputs = layers.Activation(output, dtype="float32", name=name)(x)
    return keras.Model(inputs, outputs, name=arch)


def forward_flops(model: keras.Model) -> int:
    """Floating-point operations of one forward pass of one slice (multiply-add = 2).

    Counted analytically from the layers: convolutions (and transposed convolutions) with
    their biases, batch normalisation (2 per element, as at inference), ReLU and softmax
    (1 and ~3 per element); pooling, up-sampling, concatenation and dropout count as 0.
    Needs a model built with a fixed ``input_size``.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        out_shape = tuple(layer.output.shape[1:])
        in_shape = tuple(layer.input.shape[1:]) if not isinstance(layer.input, list) else None
        if any(d is None for d in out_shape):
            raise ValueError("forward_flops needs a model built with a fixed input_size")
        n_out = 1
        for d in out_shape:
            n_out *= d
        if isinstance(layer, layers.Conv2DTranspose | layers.Conv3DTranspose):
            cin = in_shape[-1]
            total += (
                2 * math.prod(in_shape[:-1]) * math.prod(layer.kernel_size) * cin * layer.filters
            )
            if layer.use_bias:
                total += n_out
        elif isinstance(layer, layers.Conv2D | layers.Conv3D):
            cin = in_shape[-1]
            total += (
                2 * (n_out // layer.filters) * math.prod(layer.kernel_size) * cin * layer.filters
            )
            if layer.use_bias:
                total += n_out
        elif isinstance(layer, layers.BatchNormalization):
            total += 2 * n_out
        elif isinstance(layer, layers.Activation):
            name = getattr(layer.activation, "__name__", "")
            total += 3 * n_out if name == "softmax" else n_out
    return int(total)


def parameter_counts(model: keras.Model) -> dict[str, int]:
    """Total, trainable and non-trainable parameter counts."""
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    non_trainable = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    return {
        "total": trainable + non_trainable,
        "trainable": trainable,
        "non_trainable": non_trainable,
    }
