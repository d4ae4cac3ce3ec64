"""On-the-fly augmentation: one random affine transform per slice, shared by image and label.

The transform (left-right flip, rotation, shear, zoom, shift, about the slice centre) is
drawn per sample with TensorFlow's stateless RNG from a seed pair, so a given
``(seed, step)`` always gives the same batch, whatever the threading. Images are resampled
bilinearly, labels by nearest neighbour, so a label never takes a value that was not in
it; pixels coming from outside the slice are 0 (background; 0 is also "outside the brain"
in the z-scored images).

The warp is Keras's public ``keras.ops.image.affine_transform`` (constant fill 0). On the
TensorFlow backend it runs TensorFlow's ``ImageProjectiveTransformV3`` op with the same
arguments this module passed to it directly before, so its output is bit-identical
(checked in ``tests/test_data.py``, bilinear and nearest, borders included).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf


def is_identity(augment: dict) -> bool:
    """True when the augmentation settings can change nothing."""
    return not augment.get("flip") and not any(
        float(augment.get(k, 0)) > 0 for k in ("rotation", "shift", "zoom", "shear")
    )


def random_transforms(batch: int, height: int, width: int, augment: dict, seed) -> tf.Tensor:
    """Per-sample projective transforms, shape (batch, 8), mapping output to input pixels.

    ``seed`` is a shape-(2,) integer tensor for the stateless RNG.
    """
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, num=6)
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)

    def uniform(i, limit):
        return tf.random.stateless_uniform([batch], seeds[i], -limit, limit, dtype=tf.float32)

    angle = uniform(0, math.radians(float(augment.get("rotation", 0))))
    shear = uniform(1, math.radians(float(augment.get("shear", 0))))
    zoom = 1.0 + uniform(2, float(augment.get("zoom", 0)))
    shift = float(augment.get("shift", 0))
    tx = uniform(3, shift * width)
    ty = uniform(4, shift * height)
    if augment.get("flip"):
        coin = tf.random.stateless_uniform([batch], seeds[5], 0, 1, dtype=tf.float32)
        flip = tf.where(coin < 0.5, -1.0, 1.0)
    else:
        flip = tf.ones([batch], tf.float32)

    cos, sin, tan = tf.cos(angle), tf.sin(angle), tf.tan(shear)
    # linear part (output -> input): flip @ rotation @ shear @ scale(1 / zoom)
    inv = 1.0 / zoom
    m00 = flip * cos * inv
    m01 = flip * (cos * tan - sin) * inv
    m10 = sin * inv
    m11 = (sin * tan + cos) * inv
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    b0 = cx - m00 * cx - m01 * cy + tx
    b1 = cy - m10 * cx - m11 * cy + ty
    zeros = tf.zeros([batch], tf.float32)
    return tf.stack([m00, m01, b0, m10, m11, b1, zeros, zeros], axis=1)


def apply_transforms(images: tf.Tensor, transforms: tf.Tensor, interpolation: str) -> tf.Tensor:
    """Resample a (batch, y, x, channels) tensor with per-sample transforms (0 outside);
    ``interpolation`` is ``bilinear`` or ``nearest`` (either case)."""
    return keras.ops.image.affine_transform(
        images,
        transforms,
        interpolation=interpolation.lower(),
        fill_mode="constant",
        fill_value=0,
        data_format="channels_last",
    )


def random_affine(images: tf.Tensor, labels: tf.Tensor, augment: dict, seed):
    """Apply one random affine transform per sample to images and labels alike.

    ``images``: float (batch, y, x, channels), resampled bilinearly; ``labels``: integer
    (batch, y, x), resampled by nearest neighbour; ``augment``: the model's ``augment``
    settings (flip, rotation [deg], shift [fraction of size], zoom [fraction], shear [deg]);
    ``seed``: shape-(2,) integer seed of the stateless RNG.
    """
    if is_identity(augment):
        return images, labels
    shape = tf.shape(images)
    transforms = random_transforms(shape[0], shape[1], shape[2], augment, seed)
    out_images = apply_transforms(images, transforms, "BILINEAR")
    out_labels = apply_transforms(labels[..., None], transforms, "NEAREST")[..., 0]
    return out_images, out_labels
