"""Test-time mirroring (tumorseg.inference.tta) through the forward pass, on stand-in
functions and on small Keras models, 2D slices and 3D windows."""

import numpy as np
import pytest

from tumorseg.inference.predict import predict_probabilities
from tumorseg.inference.tta import entropy, mirror_axes, mirrored, region_entropy


def test_mirror_axes_follow_the_training_flips():
    assert mirror_axes("mirror", {"flip": True}) == (-2,)
    assert mirror_axes("mirror", {}) == (-2,)  # augment.flip defaults to true
    assert mirror_axes("mirror", {"flip": False}) == ()
    assert mirror_axes("none", {"flip": True}) == ()
    with pytest.raises(ValueError, match="tta"):
        mirror_axes("rotate", {})


def test_mirrored_averages_the_flipped_back_passes():
    rng = np.random.default_rng(0)
    batch = rng.random((3, 5, 7, 2)).astype(np.float32)

    def skewed(x):  # not mirror-symmetric: depends on the position along x
        return np.cumsum(x, axis=-2)

    want = (skewed(batch) + skewed(batch[:, :, ::-1])[:, :, ::-1]) / 2
    np.testing.assert_allclose(mirrored(skewed, (-2,))(batch), want, rtol=1e-6)
    assert not np.allclose(want, skewed(batch))
    # two axes: all four images, each flipped back
    both = mirrored(skewed, (-2, -3))(batch)
    flips = [(), (-2,), (-3,), (-2, -3)]
    want = sum(np.flip(skewed(np.flip(batch, f)), f) for f in flips) / 4
    np.testing.assert_allclose(both, want, rtol=1e-6)
    assert mirrored(skewed, ()) is skewed


def _pointwise_model(dims: int, shape, channels: int, classes: int, kernel: int = 1):
    import keras

    inputs = keras.Input((*shape, channels))
    conv = keras.layers.Conv2D if dims == 2 else keras.layers.Conv3D
    x = conv(classes, kernel, padding="same", kernel_initializer="glorot_uniform")(inputs)
    outputs = keras.layers.Softmax()(x)
    keras.utils.set_random_seed(3)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("dims", [2, 3])
def test_a_mirror_symmetric_model_predicts_the_same_with_and_without_mirroring(dims):
    """A pointwise model (1-voxel kernels) commutes with the flip: mirroring gives the plain
    prediction, for slices and for the 3D sliding window alike; a 3-voxel kernel does not."""
    rng = np.random.default_rng(1)
    image = rng.standard_normal((8, 16, 16, 2)).astype(np.float32)
    windows = {"overlap": 0.5, "gaussian": True}
    shape = (16, 16) if dims == 2 else (4, 8, 8)
    for kernel, symmetric in ((1, True), (3, False)):
        model = _pointwise_model(dims, shape, 2, 4, kernel)
        plain = predict_probabilities(model, image, 4, windows)
        tta = predict_probabilities(model, image, 4, windows, mirror=(-2,))
        assert tta.shape == plain.shape == (8, 16, 16, 4)
        np.testing.assert_allclose(tta.sum(-1), 1.0, atol=1e-5)
        assert np.allclose(tta, plain, atol=1e-6) == symmetric, kernel


def test_entropy_against_scipy():
    from scipy.stats import entropy as scipy_entropy

    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(4), size=(5, 6, 7)).astype(np.float32)
    p[0, 0, 0] = [1, 0, 0, 0]
    p[0, 0, 1] = [0.25] * 4
    h = entropy(p)
    assert h.dtype == np.float32 and h.shape == (5, 6, 7)
    np.testing.assert_allclose(h, scipy_entropy(p, axis=-1), rtol=1e-5, atol=1e-6)
    assert h[0, 0, 0] == 0 and h[0, 0, 1] == pytest.approx(np.log(4))


def test_region_entropy_is_the_sum_of_binary_entropies():
    """A region model's uncertainty: each region's binary entropy (scipy on (p, 1 - p)),
    summed over the regions; 0 where every region is certain, R ln 2 where all are at 0.5."""
    from scipy.stats import entropy as scipy_entropy

    rng = np.random.default_rng(3)
    p = rng.uniform(size=(4, 5, 6, 3)).astype(np.float32)
    p[0, 0, 0] = [1, 0, 1]
    p[0, 0, 1] = [0.5] * 3
    h = region_entropy(p)
    expected = scipy_entropy(np.stack([p, 1 - p], axis=0), axis=0).sum(axis=-1)
    assert h.dtype == np.float32 and h.shape == (4, 5, 6)
    np.testing.assert_allclose(h, expected, rtol=1e-5, atol=1e-6)
    assert h[0, 0, 0] == 0 and h[0, 0, 1] == pytest.approx(3 * np.log(2))
