"""Reading and writing medical images with checks that name the case and the file."""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from tumorseg.errors import InputError
from tumorseg.io.atomic import atomic_path
from tumorseg.io.formats import hdf5_lock, image_io
from tumorseg.io.grid import Grid

log = logging.getLogger(__name__)


def read_image(
    path: str | Path,
    case: str | None,
    role: str,
    ndim: int = 3,
    first_channel: bool = False,
    vector: bool = False,
) -> sitk.Image:
    """Read one image with SimpleITK (NIfTI, MINC, MHA, NRRD, ...), checking it.

    Raises :class:`InputError` for a missing or unreadable file (corrupt gzip included),
    the wrong dimensionality, or NaN / infinite voxels. Logs the case and the file first,
    so that after a native crash the log's last line names them. HDF5-based formats
    (MINC) are read under :data:`tumorseg.io.formats.LOCK`, others with their reader named.
    With ``first_channel`` a 4D image or one of vector pixels gives its first channel (a
    picture shows it) instead of an error; with ``vector`` pixels may have several
    components (an RGB slice of a slice stack).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{role} file not found", case, path)
    log.info("case %s: reading %s %s", case, role, path)
    try:
        with hdf5_lock(path):
            img = sitk.ReadImage(str(path), imageIO=image_io(path))
    except RuntimeError as err:
        raise InputError(
            f"cannot read the {role} image ({_reason(path, err)})", case, path
        ) from None
    if path.name.endswith(".gz"):
        _check_gzip_size(path, img, case, role)
    if img.GetDimension() == 4 and ndim == 3 and (img.GetSize()[3] == 1 or first_channel):
        img = img[:, :, :, 0]
    if first_channel and img.GetNumberOfComponentsPerPixel() > 1:
        img = sitk.VectorIndexSelectionCast(img, 0)
    if img.GetDimension() != ndim:
        size = "x".join(str(v) for v in img.GetSize())
        raise InputError(
            f"{role} image is {img.GetDimension()}D ({size}), expected {ndim}D", case, path
        )
    if img.GetNumberOfComponentsPerPixel() != 1 and not vector:
        raise InputError(f"{role} image has vector pixels, expected scalars", case, path)
    arr = sitk.GetArrayViewFromImage(img)
    if np.issubdtype(arr.dtype, np.floating):
        if path.name.endswith((".nii", ".nii.gz")):
            # ITK's NIfTI reader turns NaN voxels into 0: look at the stored voxels
            arr = np.asanyarray(nib.load(str(path)).dataobj)
        n = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if n:
            raise InputError(f"{role} image has {n} NaN or infinite voxels", case, path)
    return img


def _check_gzip_size(path: Path, img: sitk.Image, case, role) -> None:
    """ITK reads a truncated .nii.gz without complaint (the missing voxels become 0).
    The gzip trailer holds the uncompressed size (mod 2**32): it must cover the voxel data
    plus a header of at most 1 MiB. Costs one 4-byte read, not a second decompression."""
    with open(path, "rb") as fh:
        fh.seek(-4, 2)
        isize = int.from_bytes(fh.read(4), "little")
    data = (
        img.GetNumberOfPixels()
        * img.GetSizeOfPixelComponent()
        * img.GetNumberOfComponentsPerPixel()
    )
    header = (isize - data) % (1 << 32)
    if header >= (1 << 20):
        raise InputError(f"cannot read the {role} image ({_reason(path, None)})", case, path)


def _reason(path: Path, err: RuntimeError | None) -> str:
    """A short reason for a read failure instead of ITK's multi-line message."""
    if path.name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as fh:
                while fh.read(1 << 22):
                    pass
        except (OSError, EOFError, zlib.error) as gz_err:
            return f"corrupt or truncated gzip data: {gz_err}"
    if err is None:
        return "its gzip data is truncated or inconsistent with its header"
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for ln in lines:
        if "ERROR" in ln.upper() and ":" in ln:
            return ln.split(":", 1)[-1].strip()[:300]
    return (lines[-1] if lines else "unknown error")[:300]


def read_case_images(
    case: str,
    paths: dict[str, str] | None,
    image4d: str | None,
    modalities: list[str],
    image_channels: list[str],
) -> list[sitk.Image]:
    """The case's modalities, in ``modalities`` order, checked to share one grid.

    Read one after another, whatever the format: SimpleITK's readers are not safe to run
    at once in one process, NIfTI included (SimpleITK issue #74: rare crashes reading one
    NIfTI per channel from threads; once, in the SLURM test, a preprocessing job of this
    workflow died of SIGABRT within a second of starting). Two threads saved 0.04 s of a
    demo case's 0.11 s of reading.
    """
    if image4d:
        img = read_image(image4d, case, "image", ndim=4)
        n = img.GetSize()[3]
        if n != len(image_channels):
            raise InputError(
                f"4D image has {n} channels, config `image_channels` names {len(image_channels)}",
                case,
                image4d,
            )
        missing = [m for m in modalities if m not in image_channels]
        if missing:
            raise InputError(
                f"modalities {missing} are not among `image_channels` {image_channels}",
                case,
                image4d,
            )
        return [img[:, :, :, image_channels.index(m)] for m in modalities]
    images = [read_image(paths[m], case, m) for m in modalities]
    ref = Grid.from_image(images[0])
    for mod, img in zip(modalities[1:], images[1:], strict=True):
        check_same_grid(case, modalities[0], paths[modalities[0]], ref, mod, paths[mod], img)
    return images


def check_same_grid(case, ref_role, ref_path, ref_grid: Grid, role, path, img: sitk.Image):
    grid = Grid.from_image(img)
    if not grid.same_as(ref_grid):
        raise InputError(
            f"{role} lies on another grid than {ref_role} ({ref_path}): "
            f"{role} is {grid.describe()} at origin {_fmt(grid.origin)}, "
            f"{ref_role} is {ref_grid.describe()} at origin {_fmt(ref_grid.origin)}",
            case,
            path,
        )


def _fmt(v) -> str:
    return "(" + ", ".join(f"{x:g}" for x in v) + ")"


def write_image(img: sitk.Image, path: str | Path) -> None:
    """Write atomically (compressed for ``.nii.gz``); HDF5 formats under the HDF5 lock."""
    with atomic_path(path) as tmp, hdf5_lock(path, write=True):
        sitk.WriteImage(img, str(tmp), useCompression=True)
