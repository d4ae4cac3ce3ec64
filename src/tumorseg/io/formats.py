"""The image formats: the ITK reader named for each (:func:`image_io`), and one
process-wide lock for SimpleITK's HDF5-based ones (MINC 2, HDF5).

ITK's bundled HDF5 library is not thread-safe: two threads reading ``.mnc`` files at
once die intermittently (segmentation fault, "Can not get real value hyperslab",
"infinite loop closing library"). Worse, when ITK has to *guess* a file's format it asks
every registered reader, HDF5's included (``H5Fis_hdf5``), so a NIfTI read racing a MINC
read crashes as well. Hence:

- formats that do not use HDF5 and that we know the reader of (:data:`IMAGE_IOS`) are read
  with that reader named explicitly (:func:`image_io`): no HDF5 call, no lock (a case's
  files are still read one after another, see :func:`tumorseg.io.images.read_case_images`;
  the lock is for HDF5 calls made from different threads, e.g. a batch job's writer);
- everything else (HDF5-based formats, and unknown suffixes whose reader ITK must guess)
  is read, probed and written under :data:`LOCK` (:func:`hdf5_lock`).

Stdlib only: :mod:`tumorseg.io.grid`, :mod:`tumorseg.io.images` and
:mod:`tumorseg.io.slices` import it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: suffixes of the formats SimpleITK reads and writes through HDF5 (MINC 2 is HDF5;
#: SimpleITK does not open ``.mnc.gz``)
HDF5_SUFFIXES = (".mnc", ".mnc2", ".h5", ".hdf5", ".hdf")

#: formats read without HDF5, by suffix, and the ITK reader to name for them
IMAGE_IOS = {
    ".nii": "NiftiImageIO",
    ".nii.gz": "NiftiImageIO",
    ".hdr": "NiftiImageIO",
    ".img": "NiftiImageIO",
    ".mha": "MetaImageIO",
    ".mhd": "MetaImageIO",
    ".nrrd": "NrrdImageIO",
    ".nhdr": "NrrdImageIO",
    ".tif": "TIFFImageIO",  # the slices of a slice stack (LGG)
    ".tiff": "TIFFImageIO",
    ".png": "PNGImageIO",
}

#: the lock every HDF5 call of SimpleITK goes through (re-entrant: a read may nest a probe)
LOCK = threading.RLock()


def _name(path: str | Path) -> str:
    return Path(path).name.lower()


def is_hdf5(path: str | Path) -> bool:
    """Whether SimpleITK reads and writes ``path`` through HDF5."""
    return _name(path).endswith(HDF5_SUFFIXES)


def image_io(path: str | Path) -> str:
    """The ITK reader to name for ``path`` ('' when ITK must guess: HDF5 or unknown)."""
    name = _name(path)
    return next((io for sfx, io in IMAGE_IOS.items() if name.endswith(sfx)), "")


def needs_lock(path: str | Path) -> bool:
    """Reading ``path`` may call HDF5: an HDF5 format, or one ITK must guess."""
    return is_hdf5(path) or not image_io(path)


@contextmanager
def hdf5_lock(path: str | Path, *, write: bool = False) -> Iterator[None]:
    """Hold :data:`LOCK` around a SimpleITK read (or, ``write=True``, write) of ``path``.

    A no-op for a read of a format in :data:`IMAGE_IOS` (read with :func:`image_io`'s
    reader) and for a write of any non-HDF5 format (choosing a writer only compares
    suffixes).
    """
    if is_hdf5(path) or (not write and needs_lock(path)):
        with LOCK:
            yield
    else:
        yield
