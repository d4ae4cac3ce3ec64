"""Numbered 2D slice collections (the LGG layout) read and written as 3D volumes.

A patient folder holds ``<id>_<k>.tif`` (one slice; its channels are the modalities named
by ``image_channels``, RGB in the LGG collection: pre-contrast T1, FLAIR, post-contrast T1)
and, when labelled, ``<id>_<k>_mask.tif`` (0/255). Slices are stacked in numeric ``k``
order (``_10`` after ``_9``) into a volume on a *stack grid*: unit spacing, origin 0,
identity direction, array order (z = k, y = row, x = column). Predictions go back to the
same form: one ``<id>_<k>_mask.tif`` per input slice, 0/255, the input slice's size.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from tumorseg.errors import InputError
from tumorseg.io.atomic import atomic_dir
from tumorseg.io.formats import image_io
from tumorseg.io.grid import IDENTITY_DIRECTION, Grid

log = logging.getLogger("tumorseg")

SLICE_SUFFIXES = (".tif", ".tiff", ".png")
_SLICE = re.compile(r"^(?P<stem>.+?)_(?P<k>\d+)(?P<mask>_mask)?(?P<ext>\.tiff?|\.png)$", re.I)


@dataclass(frozen=True)
class Stack:
    """The slice files of one patient folder, in numeric order."""

    folder: Path
    stem: str
    numbers: tuple[int, ...]
    images: tuple[Path, ...]
    masks: tuple[Path, ...]  # empty when the folder holds no mask

    @property
    def has_masks(self) -> bool:
        return bool(self.masks)


def is_stack(path: str | Path) -> bool:
    """A slice stack is given as a folder (every other image as a file); an empty path is
    no stack."""
    return bool(path) and Path(path).is_dir()


def find_stack(folder: str | Path, case: str | None = None, images: bool = True) -> Stack:
    """List a patient folder's slices; inconsistent names are an error naming the file.
    ``images=False`` accepts a folder of masks alone (a prediction)."""
    want_images = images
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("slice folder not found", case, folder)
    images: dict[int, Path] = {}
    masks: dict[int, Path] = {}
    stems = set()
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.name.lower().endswith(SLICE_SUFFIXES):
            continue
        match = _SLICE.match(path.name)
        if match is None:
            raise InputError("slice file name is not <id>_<k>[_mask].tif", case, path)
        stems.add(match["stem"])
        target = masks if match["mask"] else images
        k = int(match["k"])
        if k in target:
            raise InputError(f"slice {k} is given twice ({target[k].name})", case, path)
        target[k] = path
    if not images and (want_images or not masks):
        raise InputError("the folder holds no <id>_<k>.tif slice", case, folder)
    if len(stems) > 1:
        raise InputError(f"slice files name several patients: {sorted(stems)}", case, folder)
    numbers = tuple(sorted(images or masks))
    if images and masks and sorted(masks) != list(numbers):
        missing = sorted(set(numbers) ^ set(masks))
        raise InputError(f"slices {missing} have an image or a mask but not both", case, folder)
    return Stack(
        folder,
        stems.pop(),
        numbers,
        tuple(images[k] for k in numbers) if images else (),
        tuple(masks[k] for k in numbers) if masks else (),
    )


def stack_grid(shape_zyx) -> Grid:
    """The stack grid of a (z, y, x) volume: unit spacing, origin 0, identity direction."""
    z, y, x = (int(v) for v in shape_zyx)
    return Grid((x, y, z), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), IDENTITY_DIRECTION)


def grid_of_stack(folder: str | Path, case: str | None = None) -> Grid:
    """The stack grid of a patient folder from its first slice's header."""
    stack = find_stack(folder, case)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(stack.images[0]))
    reader.SetImageIO(image_io(stack.images[0]))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError("cannot read the slice", case, stack.images[0]) from None
    x, y = reader.GetSize()[:2]
    return stack_grid((len(stack.numbers), y, x))


def _read_slice(path: Path, case, role: str) -> np.ndarray:
    """One 2D slice (RGB or grey) through the checked reader, as (y, x, components)."""
    from tumorseg.io.images import read_image

    img = read_image(path, case, "slice" if role == "image" else f"{role} slice", 2, vector=True)
    arr = sitk.GetArrayFromImage(img)
    return arr if arr.ndim == 3 else arr[..., None]  # (y, x, components)


def _read_all(paths, case, role: str) -> np.ndarray:
    arrays = []
    for path in paths:
        arr = _read_slice(path, case, role)
        if arrays and arr.shape != arrays[0].shape:
            raise InputError(
                f"{role} slice has shape {arr.shape[:2]} with {arr.shape[2]} channel(s), "
                f"the first slice {arrays[0].shape[:2]} with {arrays[0].shape[2]}",
                case,
                path,
            )
        arrays.append(arr)
    return np.stack(arrays)  # (z, y, x, components)


def _volume(array_zyx: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx))
    return stack_grid(array_zyx.shape).apply(img)


def read_stack_images(
    folder: str | Path, case: str, modalities: list[str], image_channels: list[str]
) -> list[sitk.Image]:
    """The modalities of a slice stack as 3D images on its stack grid, ``modalities`` order."""
    stack = find_stack(folder, case)
    log.info("case %s: reading %d slices from %s", case, len(stack.numbers), stack.folder)
    data = _read_all(stack.images, case, "image")
    if data.shape[-1] != len(image_channels):
        raise InputError(
            f"slices have {data.shape[-1]} channel(s), config `image_channels` names "
            f"{len(image_channels)} ({image_channels})",
            case,
            stack.images[0],
        )
    missing = [m for m in modalities if m not in image_channels]
    if missing:
        raise InputError(
            f"modalities {missing} are not among `image_channels` {image_channels}", case, folder
        )
    return [_volume(data[..., image_channels.index(m)]) for m in modalities]


def read_stack_masks(folder: str | Path, case: str) -> sitk.Image:
    """The mask slices of a stack as one 3D image (values as stored) on its stack grid."""
    stack = find_stack(folder, case, images=False)
    if not stack.has_masks:
        raise InputError("the folder holds no <id>_<k>_mask.tif file", case, folder)
    data = _read_all(stack.masks, case, "mask")
    if data.shape[-1] > 1 and not all(
        np.array_equal(data[..., 0], data[..., c]) for c in range(1, data.shape[-1])
    ):
        raise InputError("mask slices have several differing channels", case, stack.masks[0])
    return _volume(data[..., 0])


def write_stack_masks(
    values_zyx: np.ndarray, like: str | Path, out_dir: str | Path, case: str
) -> list[Path]:
    """Write one ``<id>_<k>_mask.tif`` per slice of the stack in ``like`` (same names,
    same size), atomically as a whole folder. Returns the written paths."""
    stack = find_stack(like, case)
    if values_zyx.shape[0] != len(stack.numbers):
        raise InputError(
            f"{values_zyx.shape[0]} predicted slices for a stack of {len(stack.numbers)}",
            case,
            like,
        )
    written = []
    with atomic_dir(out_dir) as tmp:
        for k, plane in zip(stack.numbers, values_zyx, strict=True):
            name = f"{stack.stem}_{k}_mask.tif"
            sitk.WriteImage(sitk.GetImageFromArray(np.ascontiguousarray(plane)), str(tmp / name))
            written.append(Path(out_dir) / name)
    return written


def read_stack_channel(folder: str | Path, case: str, channel: int = 0) -> sitk.Image:
    """One channel of a stack's image slices as a 3D image on its stack grid."""
    stack = find_stack(folder, case)
    data = _read_all(stack.images, case, "image")
    return _volume(data[..., min(channel, data.shape[-1] - 1)])
