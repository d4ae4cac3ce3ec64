"""Grids, the canonical grid, crop and downsampling, and the exact way back to native space.

Conventions
-----------
- A :class:`Grid` is in SimpleITK order: ``size``/``spacing``/``origin`` are (x, y, z);
  ``direction`` is the row-major 3x3 matrix of ITK (physical space LPS).
- NumPy arrays come from ``sitk.GetArrayFromImage`` and are (z, y, x).
- Forward: native grid -> reorient to LPS (exact permutation/flip, no interpolation) ->
  resample onto the canonical grid only if the reoriented grid is not already canonical ->
  crop in-plane -> block-average downsampling (box filter, anti-aliased).
- Back (nnU-Net's order): upsample class probabilities linearly to the cropped canonical
  grid, paste them into the full canonical volume (background outside the crop), resample
  them linearly to the reoriented native grid if the forward step resampled, argmax, undo
  the reorientation, and check that the result lies exactly on the native grid.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from tumorseg.io.grid import GRID_TOLERANCE, IDENTITY_DIRECTION, Grid

CANONICAL_ORIENTATION = "LPS"  # ITK identity direction


class GeometryError(RuntimeError):
    """The way back to native space did not land on the native grid."""


def canonical_grid(oriented: Grid, size, spacing) -> tuple[Grid, bool]:
    """The canonical grid for a reoriented scan, and whether resampling is needed.

    A scan already on an LPS grid of the canonical size and spacing keeps its own grid
    (a no-op: BraTS data is never interpolated). Anything else gets a canonical LPS grid
    centred on the scan's physical centre.
    """
    size = tuple(int(v) for v in size)
    spacing = tuple(float(v) for v in spacing)
    identity = IDENTITY_DIRECTION
    if (
        oriented.size == size
        and np.allclose(oriented.spacing, spacing, atol=GRID_TOLERANCE, rtol=0)
        and np.allclose(oriented.direction, identity, atol=GRID_TOLERANCE, rtol=0)
    ):
        return Grid(size, spacing, oriented.origin, identity), False
    half = (np.asarray(size) - 1) / 2.0 * np.asarray(spacing)
    origin = tuple(float(v) for v in oriented.centre() - half)
    return Grid(size, spacing, origin, identity), True


def stack_canonical_grid(oriented: Grid, size_xy) -> tuple[Grid, bool]:
    """The grid of a slice stack after centre crop / zero padding of every slice to
    ``size_xy``, and whether that changes anything. Same spacing, every slice kept, and an
    origin shifted by whole voxels, so the resampling is an exact copy of voxels."""
    size = (int(size_xy[0]), int(size_xy[1]), int(oriented.size[2]))
    if size == oriented.size:
        return oriented, False
    shift = [(o - n) // 2 for o, n in zip(oriented.size, size, strict=True)]
    origin = oriented.affine_lps()[:3] @ np.array([*shift, 1.0])
    grid = Grid(size, oriented.spacing, tuple(float(v) for v in origin), oriented.direction)
    return grid, True


def reorient(img: sitk.Image, orientation: str = CANONICAL_ORIENTATION) -> sitk.Image:
    """Permute/flip axes to ``orientation`` (exact, no interpolation)."""
    if Grid.from_image(img).orientation == orientation:
        return img
    return sitk.DICOMOrient(img, orientation)


def resample_image(img: sitk.Image, grid: Grid, default: float = 0.0) -> sitk.Image:
    """Linear resampling of an intensity image onto ``grid`` (float32)."""
    return sitk.Resample(
        sitk.Cast(img, sitk.sitkFloat32),
        grid.reference(sitk.sitkFloat32),
        sitk.Transform(),
        sitk.sitkLinear,
        default,
        sitk.sitkFloat32,
    )


def resample_probabilities(probs: np.ndarray, src: Grid, dst: Grid) -> np.ndarray:
    """Resample class probabilities (z, y, x, C) from ``src`` to ``dst`` linearly.

    Outside ``src`` the background class gets probability 1. All classes go through one
    vector-image resampling: channel 0 is stored as ``p - 1`` so that the resampler's single
    default value 0 means "background" (linear interpolation commutes with the shift).
    """
    shifted = np.array(probs, dtype=np.float32, order="C", copy=True)
    shifted[..., 0] -= 1.0
    img = src.apply(sitk.GetImageFromArray(shifted, isVector=True))
    del shifted
    ref = dst.reference(sitk.sitkFloat32)
    res = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat32)
    out = sitk.GetArrayFromImage(res)
    out[..., 0] += 1.0
    return out


def resample_labels(classes: np.ndarray, src: Grid, dst: Grid, n_classes: int) -> np.ndarray:
    """Resample an internal class map by linear interpolation of its one-hot channels.

    Up to 4 classes go through one vector resampling; more are resampled one channel at a
    time with a running argmax (first maximum wins, as :func:`argmax_classes`), so memory
    stays at two float volumes whatever the number of classes."""
    if n_classes <= 4:
        onehot = np.stack([classes == c for c in range(n_classes)], axis=-1).astype(np.float32)
        return argmax_classes(resample_probabilities(onehot, src, dst))
    ref = dst.reference(sitk.sitkFloat32)
    best = out = None
    for c in range(n_classes):
        img = src.apply(sitk.GetImageFromArray((classes == c).astype(np.float32)))
        default = 1.0 if c == 0 else 0.0
        res = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, default)
        channel = sitk.GetArrayFromImage(res)
        if best is None:
            best, out = channel, np.zeros(channel.shape, dtype=np.uint8)
            continue
        better = channel > best
        out[better] = c
        np.maximum(best, channel, out=best)
    return out


def argmax_classes(probs: np.ndarray) -> np.ndarray:
    """``np.argmax(probs, -1)`` as uint8 (the first maximum wins), computed channel by
    channel: several times faster than NumPy's argmax over a short last axis."""
    best = probs[..., 0].copy()
    out = np.zeros(best.shape, dtype=np.uint8)
    for c in range(1, probs.shape[-1]):
        channel = probs[..., c]
        better = channel > best
        out[better] = c
        np.maximum(best, channel, out=best)
    return out


# ----------------------------------------------------------------------------- crop


def crop_box(shape_zyx, crop_xy, mode: str = "center", mask: np.ndarray | None = None):
    """In-plane crop box as ``(start_x, start_y)``.

    ``center``: the same centred box for every case. ``brain``: centred on the bounding
    box of ``mask`` (z, y, x), shifted to stay inside the grid.
    """
    _, ny, nx = shape_zyx
    cx, cy = (int(v) for v in crop_xy)
    if cx > nx or cy > ny:
        raise ValueError(f"crop {cx}x{cy} is larger than the canonical grid {nx}x{ny}")
    if mode == "center" or mask is None or not mask.any():
        return ((nx - cx) // 2, (ny - cy) // 2)
    if mode != "brain":
        raise ValueError(f"unknown crop mode {mode!r}")
    ys = np.flatnonzero(mask.any(axis=(0, 2)))
    xs = np.flatnonzero(mask.any(axis=(0, 1)))
    mid_x = (xs[0] + xs[-1] + 1) // 2
    mid_y = (ys[0] + ys[-1] + 1) // 2
    sx = int(np.clip(mid_x - cx // 2, 0, nx - cx))
    sy = int(np.clip(mid_y - cy // 2, 0, ny - cy))
    return (sx, sy)


def crop(arr: np.ndarray, start_xy, size_xy) -> np.ndarray:
    """Crop (z, y, x[, C]) in-plane."""
    sx, sy = start_xy
    cx, cy = size_xy
    return arr[:, sy : sy + cy, sx : sx + cx]


def outside_crop(mask: np.ndarray, start_xy, size_xy) -> int:
    """Number of voxels of ``mask`` (z, y, x) outside the crop box."""
    return int(mask.sum() - crop(mask, start_xy, size_xy).sum())


# ----------------------------------------------------------------------- downsample


def downsampled_shape(shape_zyx, factors_xyz) -> tuple[int, int, int]:
    fz, fy, fx = factors_xyz[::-1]
    z, y, x = shape_zyx
    return (z // fz, y // fy, x // fx)


def _block_sum(arr: np.ndarray, factors_xyz, dtype) -> np.ndarray:
    """Sum over blocks of (z, y, x[, C]) by strided adds, one axis at a time (much faster
    than a reduction over a 6-D reshape). Trailing voxels that fill no block are dropped."""
    out = arr
    for axis, factor in zip((0, 1, 2), (int(f) for f in factors_xyz[::-1]), strict=True):
        n = out.shape[axis] // factor
        index = [slice(None)] * out.ndim
        index[axis] = slice(0, n * factor, factor)
        acc = out[tuple(index)].astype(dtype)
        for i in range(1, factor):
            index[axis] = slice(i, n * factor, factor)
            acc += out[tuple(index)]
        out = acc
    return out


def downsample_mean(arr: np.ndarray, factors_xyz) -> np.ndarray:
    """Block average (an anti-aliasing box filter) of (z, y, x[, C]); float32.

    Trailing voxels that do not fill a block are dropped (155 slices -> 77 with factor 2).
    """
    volume = float(np.prod([int(f) for f in factors_xyz]))
    out = _block_sum(arr, factors_xyz, np.float32)
    if volume != 1:
        out *= np.float32(1.0 / volume)
    return out


def downsample_labels(classes: np.ndarray, factors_xyz, n_classes: int, priority=None):
    """Majority vote per block of an internal class map; ties go to the class of highest
    ``priority`` (default: the later class; BraTS maps pass ET > NCR > ED > background, so
    thin structures are not lost to ties)."""
    priority = np.arange(n_classes, dtype=np.int64) if priority is None else priority
    if all(int(f) == 1 for f in factors_xyz):
        return classes.astype(np.uint8)
    block = int(np.prod([int(f) for f in factors_xyz]))
    if block <= 15 and n_classes <= 4:
        # all classes counted in one pass: class c adds 1 << 4c to a uint16, whose 4-bit
        # fields then hold the per-class counts of each block (at most 15)
        code = (np.uint16(1) << (4 * np.arange(n_classes, dtype=np.uint16))).astype(np.uint16)
        packed = _block_sum(code[classes], factors_xyz, np.uint16)
        counts = [((packed >> (4 * c)) & 0xF).astype(np.uint8) for c in range(n_classes)]
    else:
        counts = [_block_sum(classes == c, factors_xyz, np.int32) for c in range(n_classes)]
    # a unique score per class (count first, then priority) makes the vote a plain argmax
    best = counts[0] * (n_classes + 1) + np.asarray(priority[0]).astype(counts[0].dtype)
    out = np.zeros(best.shape, dtype=np.uint8)
    for c in range(1, n_classes):
        score = counts[c] * (n_classes + 1) + np.asarray(priority[c]).astype(counts[c].dtype)
        better = score > best
        out[better] = c
        np.maximum(best, score, out=best)
    return out


def _upsample_axis(arr: np.ndarray, axis: int, factor: int, n_out: int) -> np.ndarray:
    """Linear upsampling along one axis with the block-centre convention of
    :func:`downsample_mean`: output voxel i sits at input coordinate (i + 0.5) / f - 0.5."""
    n_in = arr.shape[axis]
    if factor == 1 and n_in == n_out:
        return arr
    coords = np.clip((np.arange(n_out) + 0.5) / factor - 0.5, 0, n_in - 1)
    lo = np.floor(coords).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    w = (coords - lo).astype(np.float32)
    shape = [1] * arr.ndim
    shape[axis] = n_out
    w = w.reshape(shape)
    return np.take(arr, lo, axis=axis) * (1 - w) + np.take(arr, hi, axis=axis) * w


def upsample_linear(arr: np.ndarray, factors_xyz, shape_zyx) -> np.ndarray:
    """Inverse of :func:`downsample_mean`'s grid: (z', y', x'[, C]) -> ``shape_zyx``."""
    out = arr.astype(np.float32, copy=False)
    for axis, factor in zip((0, 1, 2), factors_xyz[::-1], strict=True):
        out = _upsample_axis(out, axis, int(factor), int(shape_zyx[axis]))
    return out


# ---------------------------------------------------------------- the way back


def probabilities_to_native(
    probs_ds: np.ndarray, record: dict, keep_probs: bool = False, decode=None
):
    """Class probabilities on the downsampled grid -> internal class map on the native grid.

    Parameters
    ----------
    probs_ds : (z', y', x', C) probabilities on the downsampled cropped grid.
    record : the case's geometry record (``geometry.json``, see :func:`geometry_record`).
    keep_probs : also return the probabilities on the native grid (z, y, x, C).
    decode : probabilities (..., C) -> uint8 classes, on the resampled grid; default the
        argmax (:func:`argmax_classes`). Channel 0 is background: 1 outside the crop.

    Returns
    -------
    ``sitk.Image`` (uint8 internal classes) on the native grid, and the native
    probabilities or None. Raises :class:`GeometryError` if the result is not exactly on the
    native grid.
    """
    native = Grid.from_dict(record["native"])
    oriented = Grid.from_dict(record["oriented"])
    canonical = Grid.from_dict(record["canonical"])
    start = record["crop"]["start"]
    size = record["crop"]["size"]
    factors = record["downsample"]
    n_cls = probs_ds.shape[-1]
    decode = decode or argmax_classes
    expected = tuple(record["downsampled_shape_zyx"])
    if tuple(probs_ds.shape[:3]) != expected:
        raise GeometryError(
            f"probabilities have shape {probs_ds.shape[:3]}, the case's downsampled grid is "
            f"{expected}"
        )

    cropped_shape = (canonical.shape_zyx[0], size[1], size[0])
    up = upsample_linear(probs_ds, factors, cropped_shape)
    if record["resampled"]:
        # resample from the crop box itself (a sub-grid of the canonical grid); outside it
        # the background class has probability 1, as in the pasted full volume
        box = Grid(
            size=(size[0], size[1], canonical.size[2]),
            spacing=canonical.spacing,
            origin=tuple(
                float(v)
                for v in canonical.affine_lps()[:3] @ np.array([start[0], start[1], 0, 1.0])
            ),
            direction=canonical.direction,
        )
        probs = resample_probabilities(up, box, oriented)
        classes = decode(probs)
    else:
        # the canonical grid is the reoriented native grid: paste into the full volume
        probs = None
        classes = np.zeros(canonical.shape_zyx, dtype=np.uint8)
        classes[:, start[1] : start[1] + size[1], start[0] : start[0] + size[0]] = decode(up)
        if keep_probs:
            probs = np.zeros((*canonical.shape_zyx, n_cls), dtype=np.float32)
            probs[..., 0] = 1.0
            probs[:, start[1] : start[1] + size[1], start[0] : start[0] + size[0]] = up
    del up
    out = oriented.apply(sitk.GetImageFromArray(classes))
    out = reorient(out, native.orientation)
    got = Grid.from_image(out)
    if not got.same_as(native):
        raise GeometryError(
            f"case {record.get('case')}: the prediction landed on {got} instead of the native "
            f"grid {native}"
        )
    native.apply(out)  # remove floating-point drift in the header
    return out, _to_native_channels(probs, oriented, native) if keep_probs else None


def _to_native_channels(probs: np.ndarray, oriented: Grid, native: Grid) -> np.ndarray:
    """Every channel of probabilities on the oriented grid, on the native grid (z, y, x, C)."""
    return np.stack(
        [
            sitk.GetArrayFromImage(
                reorient(oriented.apply(sitk.GetImageFromArray(probs[..., c])), native.orientation)
            )
            for c in range(probs.shape[-1])
        ],
        axis=-1,
    )


def labels_to_native(classes_ds: np.ndarray, record: dict, n_classes: int | None = None):
    """A downsampled class map sent back through the same inversion (the resolution
    ceiling): one-hot channels are treated as probabilities. ``n_classes`` defaults to the
    record's label map (4, the BraTS classes, for records written before label maps)."""
    if n_classes is None:
        n_classes = len(record.get("label_names", ())) or 4
    onehot = np.stack([classes_ds == c for c in range(n_classes)], axis=-1).astype(np.float32)
    img, _ = probabilities_to_native(onehot, record)
    return img


def _crop_box_grid(canonical: Grid, start, size) -> Grid:
    """The crop box as a grid of its own (a sub-grid of the canonical grid)."""
    origin = canonical.affine_lps()[:3] @ np.array([start[0], start[1], 0, 1.0])
    return Grid(
        size=(int(size[0]), int(size[1]), canonical.size[2]),
        spacing=canonical.spacing,
        origin=tuple(float(v) for v in origin),
        direction=canonical.direction,
    )


def values_to_native(values_ds: np.ndarray, record: dict) -> sitk.Image:
    """An intensity image on the downsampled cropped grid (z', y', x') -> float32 image on
    the native grid (image translation): linear upsampling to the cropped grid, 0 outside
    the crop, linear resampling to the reoriented native grid where the forward step
    resampled, the reorientation undone; raises :class:`GeometryError` off the grid."""
    native = Grid.from_dict(record["native"])
    oriented = Grid.from_dict(record["oriented"])
    canonical = Grid.from_dict(record["canonical"])
    start, size = record["crop"]["start"], record["crop"]["size"]
    expected = tuple(record["downsampled_shape_zyx"])
    if tuple(values_ds.shape) != expected:
        raise GeometryError(f"values have shape {values_ds.shape}, the grid is {expected}")
    cropped_shape = (canonical.shape_zyx[0], size[1], size[0])
    up = upsample_linear(values_ds, record["downsample"], cropped_shape)
    if record["resampled"]:
        box = _crop_box_grid(canonical, start, size).apply(sitk.GetImageFromArray(up))
        ref = oriented.reference(sitk.sitkFloat32)
        out = sitk.Resample(box, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    else:
        full = np.zeros(canonical.shape_zyx, dtype=np.float32)
        full[:, start[1] : start[1] + size[1], start[0] : start[0] + size[0]] = up
        out = oriented.apply(sitk.GetImageFromArray(full))
    out = reorient(out, native.orientation)
    if not Grid.from_image(out).same_as(native):
        raise GeometryError(
            f"case {record.get('case')}: the image landed on {Grid.from_image(out)} instead "
            f"of the native grid {native}"
        )
    return native.apply(out)
