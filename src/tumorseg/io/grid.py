"""The grid of an image (size, spacing, origin, direction), the one grid comparison, and a
case's geometry record.

A :class:`Grid` is in SimpleITK order: ``size``/``spacing``/``origin`` are (x, y, z);
``direction`` is the row-major 3x3 matrix of ITK (physical space LPS). Two grids are the
same when their sizes are equal and spacing, origin and direction agree within
:data:`GRID_TOLERANCE` (mm, or direction cosines); :func:`grid_differences` says how two
grids differ, for the error messages of every reader and writer that checks one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from tumorseg.io.formats import hdf5_lock, image_io
from tumorseg.io.tables import read_json

#: largest difference of spacing, origin (mm) or direction cosine between two grids, or two
#: affines, that still counts as the same grid
GRID_TOLERANCE = 1e-4
#: the identity direction (row-major 3x3): axes along L, P, S
IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Grid:
    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def from_image(cls, img: sitk.Image) -> Grid:
        return cls(
            size=tuple(int(v) for v in img.GetSize()[:3]),
            spacing=tuple(float(v) for v in img.GetSpacing()[:3]),
            origin=tuple(float(v) for v in img.GetOrigin()[:3]),
            direction=tuple(float(v) for v in _direction3(img)),
        )

    @classmethod
    def from_file(cls, path) -> Grid:
        """The grid of an image file, from its header alone (no voxel is read); an
        HDF5-based file (MINC) under the process-wide HDF5 lock."""
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.SetImageIO(image_io(path))
        with hdf5_lock(path):
            reader.ReadImageInformation()
        return cls.from_image(reader)

    @classmethod
    def from_dict(cls, d: dict) -> Grid:
        return cls(
            size=tuple(int(v) for v in d["size"]),
            spacing=tuple(float(v) for v in d["spacing"]),
            origin=tuple(float(v) for v in d["origin"]),
            direction=tuple(float(v) for v in d["direction"]),
        )

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return self.size[::-1]

    @property
    def orientation(self) -> str:
        return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(self.direction)

    def matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def affine_lps(self) -> np.ndarray:
        """4x4 voxel (x, y, z) -> LPS millimetre matrix."""
        aff = np.eye(4)
        aff[:3, :3] = self.matrix() * np.asarray(self.spacing)
        aff[:3, 3] = self.origin
        return aff

    def affine_ras(self) -> np.ndarray:
        """4x4 voxel -> RAS matrix, as in a NIfTI header (and nibabel's ``img.affine``)."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.affine_lps()

    def centre(self) -> np.ndarray:
        return self.affine_lps()[:3, :3] @ ((np.asarray(self.size) - 1) / 2.0) + np.asarray(
            self.origin
        )

    def reference(self, pixel_type=sitk.sitkUInt8) -> sitk.Image:
        img = sitk.Image(list(self.size), pixel_type)
        self.apply(img)
        return img

    def apply(self, img: sitk.Image) -> sitk.Image:
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img

    def same_as(self, other: Grid, tol: float = GRID_TOLERANCE) -> bool:
        return (
            self.size == other.size
            and np.allclose(self.spacing, other.spacing, atol=tol, rtol=0)
            and np.allclose(self.origin, other.origin, atol=tol, rtol=0)
            and np.allclose(self.direction, other.direction, atol=tol, rtol=0)
        )

    def describe(self) -> str:
        size = "x".join(str(v) for v in self.size)
        spacing = "x".join(f"{v:g}" for v in self.spacing)
        return f"{size} voxels of {spacing} mm, {self.orientation}"


def _direction3(img: sitk.Image) -> tuple[float, ...]:
    d = img.GetDirection()
    if img.GetDimension() == 3:
        return d
    n = img.GetDimension()
    return tuple(d[r * n + c] for r in range(3) for c in range(3))


def grid_differences(a: Grid, b: Grid, tol: float = GRID_TOLERANCE) -> list[str]:
    """How ``a`` differs from ``b`` (``"size (..) vs (..)"``, ``"origin (..) vs (..)"``, ...);
    empty when they are the same grid."""
    problems = []
    if a.size != b.size:
        problems.append(f"size {a.size} vs {b.size}")
    for key in ("spacing", "origin", "direction"):
        va, vb = getattr(a, key), getattr(b, key)
        if not np.allclose(va, vb, rtol=0, atol=tol):
            fa = tuple(round(v, 6) for v in va)
            fb = tuple(round(v, 6) for v in vb)
            problems.append(f"{key} {fa} vs {fb}")
    return problems


def load_geometry(path: str | Path, case: str | None = None) -> dict:
    """A case's geometry record (``geometry.json``, written by preprocessing), or
    :class:`~tumorseg.errors.InputError` naming the case and the file."""
    return read_json(path, "geometry record", case)
