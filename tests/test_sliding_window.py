"""Sliding-window inference: nnU-Net's window starts, Gaussian weights, whole-volume results."""

import numpy as np
import pytest

from tumorseg.training.sliding_window import (
    gaussian_importance,
    predict_volume,
    tile_starts,
    window_starts,
)


@pytest.mark.parametrize(
    ("size", "patch", "overlap", "expected"),
    [
        # step 8: n = ceil(61 / 8) + 1 = 9 windows, actual step 61 / 8 = 7.625;
        # 4 * 7.625 = 30.5 rounds half to even (30), as np.round does in nnU-Net
        (77, 16, 0.5, [0, 8, 15, 23, 30, 38, 46, 53, 61]),
        (100, 40, 0.5, [0, 20, 40, 60]),  # step 20: ceil(60 / 20) + 1 = 4
        (100, 40, 0.25, [0, 30, 60]),  # step 30: ceil(60 / 30) + 1 = 3
        (10, 4, 0.0, [0, 3, 6]),  # step 4: ceil(6 / 4) + 1 = 3, spread to 3
        (11, 4, 0.5, [0, 2, 4, 5, 7]),  # step 2: 5 windows at 0, 1.75, 3.5, 5.25, 7
        (96, 96, 0.5, [0]),
        (50, 64, 0.5, [0]),  # shorter than the patch: one window (padded)
        (97, 96, 0.5, [0, 1]),
    ],
)
def test_window_starts_match_nnunet(size, patch, overlap, expected):
    assert window_starts(size, patch, overlap) == expected


def test_window_starts_cover_the_axis_evenly():
    for size in range(1, 60):
        for patch in (1, 4, 7, 16):
            for overlap in (0.0, 0.3, 0.5, 0.75):
                starts = window_starts(size, patch, overlap)
                assert starts[0] == 0 and starts == sorted(set(starts))
                assert starts[-1] == max(0, size - patch)
                steps = np.diff(starts)
                assert np.all(steps <= patch * (1 - overlap) + 1)  # no gaps, as dense as asked
    with pytest.raises(ValueError, match="overlap"):
        window_starts(10, 4, 1.0)


def test_gaussian_importance_is_nnunets():
    patch = (5, 8, 9)
    w = gaussian_importance(patch, sigma_scale=0.125)
    assert w.dtype == np.float32 and w.shape == patch
    assert w[2, 4, 4] == 1.0 and w.max() == 1.0 and w.min() > 0
    # inside 4 sigma the smoothed impulse is the product of 1D Gaussians about patch // 2
    sig = np.array(patch) * 0.125
    grids = np.meshgrid(*[np.arange(p) - p // 2 for p in patch], indexing="ij")
    analytic = np.exp(-sum(g**2 / (2 * s**2) for g, s in zip(grids, sig, strict=True)))
    radius = [int(4 * s + 0.5) for s in sig]
    inside = np.all([np.abs(g) <= r for g, r in zip(grids, radius, strict=True)], axis=0)
    np.testing.assert_allclose(w[inside], analytic[inside], rtol=1e-5, atol=1e-30)
    assert np.all(w[~inside] == w[inside].min())  # zeros replaced by the smallest weight


def softmax_of_channels(n_classes, channels, seed=0):
    """A per-voxel model: softmax of a fixed linear map of the channels (translation
    equivariant) that counts its calls and the tiles it saw."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(channels, n_classes)).astype(np.float32)
    calls = []

    def predict(batch):
        assert batch.dtype == np.float32 and batch.ndim == 5
        calls.append(batch.shape)
        logits = batch @ weights
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    return predict, calls


def position_dependent(n_classes):
    """A model whose output depends on where a voxel lies in the window (not equivariant)."""

    def predict(batch):
        b, z, y, x, _ = batch.shape
        ramp = np.arange(z * y * x, dtype=np.float32).reshape(1, z, y, x, 1) / (z * y * x)
        logits = batch[..., :1] * np.arange(n_classes, dtype=np.float32) + ramp * 3
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    return predict


@pytest.mark.parametrize("shape", [(6, 10, 12), (4, 7, 9)])
def test_a_window_over_the_whole_volume_is_one_forward_pass(shape):
    rng = np.random.default_rng(1)
    image = rng.normal(size=(*shape, 2)).astype(np.float16)
    predict = position_dependent(3)
    patch_zyx = (6, 10, 12)  # the first volume exactly, the second padded to it
    got = predict_volume(predict, image, patch_zyx[::-1], n_classes=3, overlap=0.5)
    padded = np.zeros((*patch_zyx, 2), np.float32)
    padded[: shape[0], : shape[1], : shape[2]] = image
    direct = predict(padded[None])[0][: shape[0], : shape[1], : shape[2]]
    assert got.shape == (*shape, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, direct, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("gaussian", [True, False])
def test_overlapping_windows_reproduce_a_per_voxel_model_exactly(gaussian):
    shape, patch_zyx = (9, 13, 11), (4, 6, 5)  # odd sizes, several windows per axis
    rng = np.random.default_rng(2)
    image = rng.normal(size=(*shape, 3)).astype(np.float32)
    predict, calls = softmax_of_channels(4, 3)
    got = predict_volume(
        predict, image, patch_zyx[::-1], 4, overlap=0.5, gaussian=gaussian, batch_size=3
    )
    expected = predict(image[None])[0]
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-6)
    n_tiles = len(tile_starts(shape, patch_zyx, 0.5))
    assert n_tiles == 4 * 4 * 4  # z: 0,2,3,5; y: 0,2,5,7; x: 0,2,4,6 (window_starts)
    batches = [c[0] for c in calls[:-1]]  # the last call is `expected`
    assert batches == [3] * 21 + [1]  # batches of 3 tiles, the rest in the last


def test_a_volume_smaller_than_the_patch_in_some_axes():
    shape, patch_zyx = (3, 13, 5), (4, 6, 8)  # z and x shorter than the patch, y longer
    image = np.random.default_rng(3).normal(size=(*shape, 2)).astype(np.float32)
    predict, _ = softmax_of_channels(2, 2, seed=4)
    got = predict_volume(predict, image, patch_zyx[::-1], 2, overlap=0.25)
    assert got.shape == (*shape, 2)
    np.testing.assert_allclose(got, predict(image[None])[0], rtol=2e-6, atol=1e-7)
    # a position-dependent model still gives probabilities everywhere
    other = predict_volume(position_dependent(2), image, patch_zyx[::-1], 2)
    assert np.all(np.isfinite(other)) and np.allclose(other.sum(-1), 1.0, atol=1e-6)


def test_a_wrong_output_shape_is_reported():
    image = np.zeros((4, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match="predict_fn returned shape"):
        predict_volume(lambda b: np.zeros((*b.shape[:4], 2)), image, (4, 4, 4), n_classes=3)
