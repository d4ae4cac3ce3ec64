"""Image metrics against independent computations on known pairs."""

import numpy as np
import pytest

from tumorseg.errors import InputError
from tumorseg.evaluation.regression import image_metrics, masked_ssim, ssim_window


def _ellipsoid(shape, radii=None):
    grids = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    if radii is None:
        radii = [0.35 * n for n in shape]
    centre = [(n - 1) / 2 for n in shape]
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
    return r2 <= 1.0


def _smooth(shape, seed=0):
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij")
    out = sum(np.sin(3.0 * g + rng.uniform(0, 3)) for g in grids)
    return out + 0.2 * rng.standard_normal(shape)


def _hand_ssim_map(x, y, win, data_range, k1=0.01, k2=0.03):
    """SSIM map written out window by window: uniform window, sample (co)variance, the
    image mirrored at its faces (numpy 'symmetric' = scipy 'reflect')."""
    from numpy.lib.stride_tricks import sliding_window_view

    r = win // 2
    xp = np.pad(x, r, mode="symmetric")
    yp = np.pad(y, r, mode="symmetric")
    axes = tuple(range(x.ndim, 2 * x.ndim))
    wx = sliding_window_view(xp, (win,) * x.ndim)
    wy = sliding_window_view(yp, (win,) * x.ndim)
    n = win**x.ndim
    mx, my = wx.mean(axis=axes), wy.mean(axis=axes)
    vx = wx.var(axis=axes, ddof=1)
    vy = wy.var(axis=axes, ddof=1)
    dx = wx - mx[(...,) + (None,) * x.ndim]
    dy = wy - my[(...,) + (None,) * x.ndim]
    cxy = (dx * dy).sum(axis=axes) / (n - 1)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def _hand_metrics(pred, real, mask):
    pred = np.where(mask, pred, 0.0)
    real = np.where(mask, real, 0.0)
    diff = (pred - real)[mask]
    rng = real[mask].max() - real[mask].min()
    mse = np.mean(diff**2)
    return {
        "mae": np.mean(np.abs(diff)),
        "mse": mse,
        "psnr": 10 * np.log10(rng**2 / mse),
        "ssim": _hand_ssim_map(pred, real, ssim_window(mask.shape), rng)[mask].mean(),
    }


def test_constant_offset():
    shape = (12, 14, 16)
    mask = _ellipsoid(shape)
    real = _smooth(shape)
    got = image_metrics(real + 0.5, real, mask)
    rng = np.ptp(real[mask])
    assert got["mae"] == pytest.approx(0.5, abs=1e-12)
    assert got["mse"] == pytest.approx(0.25, abs=1e-12)
    assert got["psnr"] == pytest.approx(10 * np.log10(rng**2 / 0.25), abs=1e-9)
    # outside the brain nothing counts, whatever the prediction holds there
    noisy_outside = np.where(mask, real + 0.5, 1e6)
    assert image_metrics(noisy_outside, real, mask) == got


def test_scaling_and_given_range():
    shape = (10, 12, 9)
    mask = _ellipsoid(shape)
    real = _smooth(shape, seed=1)
    got = image_metrics(2.0 * real, real, mask, data_range=4.0)
    r = real[mask]
    assert got["mae"] == pytest.approx(np.mean(np.abs(r)), rel=1e-12)
    assert got["mse"] == pytest.approx(np.mean(r**2), rel=1e-12)
    assert got["psnr"] == pytest.approx(10 * np.log10(16.0 / np.mean(r**2)), rel=1e-12)


def test_identical_images():
    shape = (9, 20, 18)
    mask = _ellipsoid(shape)
    real = _smooth(shape, seed=2)
    got = image_metrics(real, real, mask)
    assert got["mae"] == 0 and got["mse"] == 0
    assert got["psnr"] == float("inf")
    assert got["ssim"] == pytest.approx(1.0, abs=1e-12)


def test_ssim_decreases_with_noise():
    shape = (16, 20, 18)
    mask = _ellipsoid(shape)
    real = _smooth(shape, seed=3)
    noise = np.random.default_rng(4).standard_normal(shape)
    values = [image_metrics(real + s * noise, real, mask)["ssim"] for s in (0.05, 0.2, 0.5, 1)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert values[0] < 1 and values[-1] > -1


@pytest.mark.parametrize(
    "shape", [(11, 13, 12), (5, 14, 15), (3, 12, 12), (14, 16)], ids=["3d", "5sl", "3sl", "2d"]
)
def test_against_hand_written(shape):
    mask = _ellipsoid(shape, radii=[max(0.4 * n, 1.0) for n in shape])
    real = _smooth(shape, seed=5)
    pred = real + 0.3 * np.random.default_rng(6).standard_normal(shape)
    got = image_metrics(pred, real, mask)
    want = _hand_metrics(pred, real, mask)
    for key in ("mae", "mse", "psnr", "ssim"):
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    assert ssim_window(shape) == min(7, min(shape) - (1 - min(shape) % 2))


def test_crop_is_exact_near_faces():
    """A brain touching the grid's faces and one far from them: the cropped computation
    equals the hand-written full-volume map."""
    shape = (10, 16, 15)
    real = _smooth(shape, seed=7)
    pred = real + 0.4 * np.random.default_rng(8).standard_normal(shape)
    corner = np.zeros(shape, bool)
    corner[0:3, 0:4, 10:15] = True
    centre = np.zeros(shape, bool)
    centre[5, 7:9, 6:8] = True
    for mask in (corner, centre):
        want = _hand_metrics(pred, real, mask)["ssim"]
        got = masked_ssim(
            np.where(mask, pred, 0), np.where(mask, real, 0), mask, np.ptp(real[mask])
        )
        assert got == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("shape", [(1, 20, 22), (2, 20, 22)])
def test_thin_volumes_are_scored_per_slice(shape):
    mask = _ellipsoid(shape, radii=[1.0, 8.0, 9.0])
    real = _smooth(shape, seed=9)
    pred = real + 0.2 * np.random.default_rng(10).standard_normal(shape)
    got = image_metrics(pred, real, mask)
    rng = np.ptp(real[mask])
    pm, rm = np.where(mask, pred, 0), np.where(mask, real, 0)
    maps = [_hand_ssim_map(pm[z], rm[z], 7, rng) for z in range(shape[0])]
    want = np.concatenate([m[mask[z]] for z, m in enumerate(maps)]).mean()
    assert got["ssim"] == pytest.approx(want, abs=1e-6)
    assert np.isfinite(got["psnr"])


def test_errors():
    shape = (6, 8, 8)
    real = _smooth(shape)
    with pytest.raises(InputError, match="brain mask is empty"):
        image_metrics(real, real, np.zeros(shape, bool))
    with pytest.raises(InputError, match="shapes differ"):
        image_metrics(real[:-1], real, np.ones(shape, bool))
    with pytest.raises(InputError, match="constant"):
        image_metrics(real, np.ones(shape), np.ones(shape, bool))
    bad = real.copy()
    bad[3, 4, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        image_metrics(bad, real, np.ones(shape, bool))
