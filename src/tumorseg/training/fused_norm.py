"""Batch normalisation for the model that is trained on the CPU: TensorFlow's fused kernel.

Keras 3's ``BatchNormalization`` computes the batch moments and the normalisation as a
dozen separate element-wise passes and reductions over the activations. On the CPU they
cost the default U-Net about a fifth of its training time, and their multi-threaded
reductions are not reproducible: two runs with the same seed, data and op determinism
drift apart in the fifth digit of the first epoch's loss. TensorFlow's fused kernel
(``FusedBatchNormV3`` and its gradient, oneDNN's on the CPU) does the same in one pass
forward and one backward, and gives the same weights run after run.

:class:`FusedBatchNormalization` is Keras's layer with only its training branch replaced:
the same variables, the same normalisation by the biased batch variance and the same
moving-average update of the moving statistics (in float32), rounded differently. Only the
model that is trained uses it (:func:`use_fused`); the saved model is built with Keras's
own layer, which takes its weights one to one, so ``model.keras`` loads in safe mode
without this package. Inference, and anything the kernel does not cover (masks,
renormalisation, synchronised statistics, a channel axis other than the last, another
backend), takes Keras's own path.
"""

from __future__ import annotations

import keras
from keras import layers


def use_fused(gpus: int, deterministic: bool) -> bool:
    """Whether training uses the fused layer: always on the CPU; on a GPU only without
    op determinism (TensorFlow lists the fused kernel's gradient among the ops that are
    not deterministic on a GPU; there Keras's layer is kept)."""
    return gpus == 0 or not deterministic


class FusedBatchNormalization(layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` that trains with TensorFlow's fused kernel."""

    def _fusable(self, inputs, training, mask) -> bool:
        rank = len(inputs.shape)
        return (
            bool(training)
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized
            and rank in (4, 5)
            and self.axis in (-1, rank - 1)
            and keras.backend.backend() == "tensorflow"
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, tf.float32)  # as Keras's layer: statistics in float32
        channels = int(x.shape[-1])
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x,
            gamma,
            beta,
            epsilon=self.epsilon,
            data_format="NHWC" if len(x.shape) == 4 else "NDHWC",
            is_training=True,
        )
        # the kernel returns the unbiased batch variance; Keras's moving variance
        # averages the biased one, which is also the one that normalised the batch
        n = tf.cast(tf.size(x, out_type=tf.int64) // channels, tf.float32)
        variance = variance * (n - 1.0) / tf.maximum(n, 1.0)
        momentum = self.momentum
        self.moving_mean.assign(
            tf.cast(self.moving_mean, tf.float32) * momentum + mean * (1.0 - momentum)
        )
        self.moving_variance.assign(
            tf.cast(self.moving_variance, tf.float32) * momentum + variance * (1.0 - momentum)
        )
        return tf.cast(y, self.compute_dtype)
