"""The fused batch normalisation of training: Keras's layer's numbers, a NumPy reference,
weights that pass one to one to the saved model, and reproducible training."""

from __future__ import annotations

import hashlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from training_fixtures import model_defaults

from tumorseg.training.fused_norm import FusedBatchNormalization, use_fused
from tumorseg.training.models import build_model


def _pair(shape, momentum=0.9, seed=0):
    """A fused and a Keras layer with the same, non-trivial weights."""
    rng = np.random.default_rng(seed)
    channels = shape[-1]
    weights = [
        rng.uniform(0.5, 1.5, channels).astype(np.float32),  # gamma
        rng.normal(size=channels).astype(np.float32),  # beta
        rng.normal(size=channels).astype(np.float32),  # moving mean
        rng.uniform(0.5, 2.0, channels).astype(np.float32),  # moving variance
    ]
    layers = []
    for cls in (FusedBatchNormalization, keras.layers.BatchNormalization):
        layer = cls(momentum=momentum)
        layer.build(shape)
        layer.set_weights(weights)
        layers.append(layer)
    return layers, weights


@pytest.mark.parametrize("shape", [(3, 6, 5, 4), (2, 3, 4, 5, 3)])  # 2D slices, 3D patches
def test_training_step_matches_keras_and_numpy(shape):
    (fused, plain), (gamma, beta, mean0, var0) = _pair(shape)
    x = np.random.default_rng(1).normal(2.0, 3.0, size=shape).astype(np.float32)
    outputs, grads = [], []
    for layer in (fused, plain):
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt, training=True)
            loss = tf.reduce_sum(y * tf.sin(xt))  # a loss whose gradient is not trivial
        outputs.append(y.numpy())
        grads.append([g.numpy() for g in tape.gradient(loss, [xt, layer.gamma, layer.beta])])

    axes = tuple(range(len(shape) - 1))
    mean, var = x.mean(axis=axes), x.var(axis=axes)  # the biased batch variance
    reference = (x - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(outputs[0], reference, atol=2e-5)
    np.testing.assert_allclose(outputs[0], outputs[1], atol=2e-5)
    for g_fused, g_plain in zip(grads[0], grads[1], strict=True):
        np.testing.assert_allclose(g_fused, g_plain, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused.moving_mean.numpy(), 0.9 * mean0 + 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(fused.moving_variance.numpy(), 0.9 * var0 + 0.1 * var, rtol=1e-5)
    np.testing.assert_allclose(fused.moving_variance.numpy(), plain.moving_variance.numpy(), 1e-5)


def test_inference_is_keras_own_path():
    (fused, plain), _ = _pair((2, 4, 4, 3))
    x = np.random.default_rng(2).normal(size=(2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(fused(x, training=False), plain(x, training=False))
    before = fused.moving_mean.numpy()
    fused(x, training=False)
    np.testing.assert_array_equal(fused.moving_mean.numpy(), before)


def test_trained_weights_pass_one_to_one_to_the_saved_model(tmp_path):
    from tumorseg.inference.predict import load_model

    settings = {**model_defaults(), "depth": 2, "base_filters": 4}
    trained = build_model(settings, 4, input_size=16, fused_batch_norm=True)
    saved = build_model(settings, 4, input_size=16)
    assert any(isinstance(layer, FusedBatchNormalization) for layer in trained.layers)
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in saved.layers)
    assert [w.path for w in trained.weights] == [w.path for w in saved.weights]
    x = np.random.default_rng(3).normal(size=(2, 16, 16, 4)).astype(np.float32)
    trained(x, training=True)  # moves the moving statistics
    saved.set_weights(trained.get_weights())
    saved.save(tmp_path / "model.keras")
    loaded = load_model(str(tmp_path / "model.keras"))  # safe mode, built-in layers only
    np.testing.assert_array_equal(loaded(x), trained(x, training=False))


def _train_hash(settings) -> str:
    from tumorseg.training.assemble import compiled_model

    keras.utils.set_random_seed(5)
    model = compiled_model(settings, 4, 32, 10, policy=None)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 32, 32, 4)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (16, 32, 32))]
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()


def test_training_with_the_fused_layer_is_reproducible():
    settings = {**model_defaults(), "depth": 2, "base_filters": 16, "batch_size": 8}
    assert _train_hash(settings) == _train_hash(settings)


def test_fused_on_cpu_and_on_gpu_only_without_determinism():
    assert use_fused(0, True) and use_fused(0, False)
    assert use_fused(1, False) and not use_fused(1, True)
