"""The mixed-precision path of training, run on CPU (TensorFlow computes mixed_float16 on
CPU too, slowly), so that a GPU user's first run does not take an untested branch."""

from __future__ import annotations

import numpy as np
from training_fixtures import model_defaults


def test_mixed_precision_trains_saves_and_predicts_on_cpu(tmp_path):
    import keras

    from tumorseg.predict import load_model, predict_probabilities
    from tumorseg.train import compiled_model

    keras.utils.set_random_seed(0)
    settings = {**model_defaults(), "depth": 2, "base_filters": 4, "batch_size": 4}
    model = compiled_model(settings, n_channels=4, size=32, total_steps=4, mixed=True)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == "float16" for layer in convs)
    assert all(w.dtype == "float32" for w in model.weights)  # float32 master weights

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 32, 32, 4)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (8, 32, 32))]
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()

    out = model(x[:2], training=False)
    assert out.dtype == "float32"  # the softmax stays in float32
    path = tmp_path / "mixed.keras"
    model.save(path)
    loaded = load_model(str(path))  # safe mode
    probs = predict_probabilities(loaded, x[:3].astype(np.float16), batch_size=2)
    assert probs.dtype == np.float32 and probs.shape == (3, 32, 32, 4)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-3)
    np.testing.assert_allclose(probs, np.asarray(loaded(x[:3])), atol=1e-6)
