"""Label maps: the dataset's label values, the model's classes and the evaluated regions.

Every label map is one :class:`LabelMap` (as nnU-Net's ``LabelManager``): internal class 0
is background, classes 1..n-1 are the map's labels in order. The BraTS and Decathlon
conventions are presets; ``binary`` makes any non-zero mask value the lesion; ``custom``
takes ``labels: {name: value}`` and ``regions: {name: [label names]}`` from the config.
Every step (preprocessing, training, prediction, metrics, pictures) asks the map, never a
constant, for the number of classes, their names, the regions and the values to write.

A label map travels between the workflow and its steps as a plain, JSON-able *spec*
(:func:`spec_from_config`), so a change of the map reruns the steps that use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tumorseg.errors import InputError

#: value written for "unknown" in the internal label array of an unlabelled case
UNLABELLED = 255
#: most classes a map may have (internal classes are uint8 and 255 is reserved)
MAX_CLASSES = 254

_BRATS_NAMES = ("necrotic", "edema", "enhancing")
_BRATS_REGIONS = {"WT": ("necrotic", "edema", "enhancing"), "TC": ("necrotic", "enhancing")}
_BRATS_REGIONS["ET"] = ("enhancing",)
#: presets: label name -> dataset value (background 0 implied), regions over label names
PRESETS: dict[str, dict] = {
    "brats2017": {
        "labels": dict(zip(_BRATS_NAMES, (1, 2, 4), strict=True)),
        "regions": _BRATS_REGIONS,
    },
    "brats2023": {
        "labels": dict(zip(_BRATS_NAMES, (1, 2, 3), strict=True)),
        "regions": _BRATS_REGIONS,
    },
    "decathlon": {
        "labels": dict(zip(_BRATS_NAMES, (2, 1, 3), strict=True)),
        "regions": _BRATS_REGIONS,
    },
    "binary": {"labels": {"lesion": 1}, "regions": {"lesion": ("lesion",)}},
}
CONVENTIONS = (*PRESETS, "custom")
#: tie-break priority of the BraTS classes when downsampling: small structures win ties
_BRATS_PRIORITY = (0, 2, 1, 3)  # bg, NCR, ED, ET
#: the BraTS regions over internal classes (1 necrotic, 2 edema, 3 enhancing)
_BRATS_CLASS_REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}


def spec_from_config(config: dict) -> dict:
    """The label map of a (validated) config as a plain dict: convention, labels, regions."""
    convention = config["label_convention"]
    if convention == "custom":
        labels = dict(config.get("labels") or {})
        regions = config.get("regions") or {}
    else:
        labels, regions = PRESETS[convention]["labels"], PRESETS[convention]["regions"]
    labels = {str(k): int(v) for k, v in labels.items() if int(v) != 0}
    regions = {str(k): [str(n) for n in v] for k, v in regions.items()}
    if not regions:
        regions = {name: [name] for name in labels}
    return {"convention": convention, "labels": labels, "regions": regions}


def check_spec(spec: dict) -> None:
    """Problems the schema cannot see: duplicate values, unknown names, too many classes."""
    labels, regions = spec["labels"], spec["regions"]
    where = f"label map ({spec['convention']})"
    if not labels:
        raise InputError(f"{where}: `labels` names no label besides background 0")
    if len(labels) + 1 > MAX_CLASSES:
        raise InputError(f"{where}: {len(labels) + 1} classes, at most {MAX_CLASSES}")
    values = list(labels.values())
    dups = sorted({v for v in values if values.count(v) > 1})
    if dups:
        raise InputError(f"{where}: label values {dups} are given to several names")
    if any(v < 0 for v in values):
        raise InputError(f"{where}: label values must be 0 or more, got {sorted(values)}")
    for region, names in regions.items():
        unknown = [n for n in names if n not in labels]
        if unknown or not names:
            raise InputError(
                f"{where}: region {region!r} names labels {unknown or '[]'} that are not in "
                f"`labels` ({sorted(labels)})"
            )


@dataclass(frozen=True)
class LabelMap:
    """One dataset's label map. Internal class c (0..n-1) holds dataset value
    ``values[c]``; ``regions`` maps region names to tuples of internal classes."""

    convention: str
    names: tuple[str, ...]
    values: tuple[int, ...]
    regions: dict[str, tuple[int, ...]]

    @classmethod
    def from_spec(cls, spec: dict | str) -> LabelMap:
        """A map from :func:`spec_from_config`'s dict, or from a preset's name."""
        if isinstance(spec, str):
            if spec not in PRESETS:
                raise InputError(
                    f"unknown label convention {spec!r}; choose one of {list(CONVENTIONS)}"
                )
            spec = spec_from_config({"label_convention": spec})
        check_spec(spec)
        names = ("background", *spec["labels"])
        values = (0, *(int(v) for v in spec["labels"].values()))
        regions = {
            str(r): tuple(names.index(n) for n in members) for r, members in spec["regions"].items()
        }
        return cls(str(spec["convention"]), names, values, regions)

    @property
    def n_classes(self) -> int:
        return len(self.names)

    @property
    def binary(self) -> bool:
        return self.convention == "binary"

    @property
    def brats(self) -> bool:
        """A BraTS map: the three tumour labels and the WT/TC/ET regions over them (any values),
        which the BraTS lesion-wise evaluation scores."""
        return self.names[1:] == _BRATS_NAMES and self.regions == _BRATS_CLASS_REGIONS

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(self.regions)

    def metric_name(self, region: str) -> str:
        """Keras-safe metric name of a region's Dice (``WT`` -> ``dice_wt``)."""
        return "dice_" + re.sub(r"[^0-9a-z]+", "_", region.lower()).strip("_")

    def priority(self) -> np.ndarray:
        """Tie-break order of the classes when downsampling (higher wins): BraTS keeps
        ET > NCR > ED > background; any other map ranks later classes higher."""
        if self.names[1:] == _BRATS_NAMES:
            return np.array(_BRATS_PRIORITY, dtype=np.int64)
        return np.arange(self.n_classes, dtype=np.int64)

    def write_dtype(self) -> np.dtype:
        """Smallest unsigned type holding every dataset value."""
        return np.dtype(np.uint8 if max(self.values) <= 255 else np.uint16)

    def region_painting(self) -> list[tuple[int, int]]:
        """``(region index, its own class)`` in painting order, for models trained on the
        regions (``output: regions``, nnU-Net's ``regions_class_order``): larger regions
        first, so that a voxel in a nested region gets the innermost one's class. The map's
        regions must nest (two regions are disjoint or one holds the other), each region
        must hold exactly one class that no region inside it holds, and every label must be
        in a region; otherwise an :class:`InputError` says why."""
        regions = {r: set(c) for r, c in self.regions.items()}
        where = f"label map ({self.convention}): output: regions needs nested regions, but"
        names = list(regions)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                ra, rb = regions[a], regions[b]
                if ra & rb and not (ra <= rb or rb <= ra):
                    raise InputError(f"{where} {a} and {b} overlap without one holding the other")
                if ra == rb:
                    raise InputError(f"{where} {a} and {b} are the same classes")
        uncovered = set(range(1, self.n_classes)) - set().union(*regions.values())
        if uncovered:
            missing = [self.names[c] for c in sorted(uncovered)]
            raise InputError(f"{where} the labels {missing} are in no region")
        order = []
        for r, classes in regions.items():
            inner = set().union(*(c for o, c in regions.items() if c < classes))
            own = classes - inner
            if len(own) != 1:
                raise InputError(
                    f"{where} region {r} has {len(own)} classes of its own "
                    f"({[self.names[c] for c in sorted(own)]}), not one"
                )
            order.append((names.index(r), own.pop(), len(classes)))
        order.sort(key=lambda t: -t[2])  # stable: equal sizes keep the map's order
        return [(i, c) for i, c, _ in order]

    def classes_to_regions(self, classes: np.ndarray) -> np.ndarray:
        """Internal classes -> one boolean channel per region (last axis, the map's order)."""
        return np.stack([np.isin(classes, c) for c in self.regions.values()], axis=-1)

    def regions_to_classes(self, region_probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Region probabilities (last axis, the map's order) -> internal classes (uint8):
        each region above ``threshold`` painted with its own class, larger regions first
        (:meth:`region_painting`)."""
        classes = np.zeros(region_probs.shape[:-1], dtype=np.uint8)
        for index, own in self.region_painting():
            classes[region_probs[..., index] > threshold] = own
        return classes

    def to_internal(self, values: np.ndarray, case=None, path=None) -> np.ndarray:
        """Dataset label values -> internal classes (uint8); values outside the map are an
        error naming the case, the file and the values."""
        arr = _integer_labels(np.asarray(values), case, path)
        if self.binary:
            return (arr != 0).astype(np.uint8)
        return _lookup(arr, self, case, path)

    def from_internal(self, classes: np.ndarray, value_of_lesion: int | None = None):
        """Internal classes -> dataset values (:meth:`write_dtype`). ``value_of_lesion``
        overrides the value written for class 1 of a binary map (255 for 0/255 masks)."""
        values = list(self.values)
        if value_of_lesion is not None and self.binary:
            values[1] = int(value_of_lesion)
        lut = np.asarray(values, dtype=np.uint8 if max(values) <= 255 else np.uint16)
        return lut[np.asarray(classes)]


def _integer_labels(arr: np.ndarray, case, path) -> np.ndarray:
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise InputError("label has NaN or infinite voxels", case, path)
        if not np.all(arr == np.round(arr)):
            raise InputError("label has non-integer values", case, path)
    return arr


def _lookup(arr: np.ndarray, labels: LabelMap, case, path) -> np.ndarray:
    mapping = dict(zip(labels.values, range(labels.n_classes), strict=True))
    if arr.dtype.kind in "ui" and arr.dtype.itemsize <= 2:
        # one gather through a lookup table; unknown values map to a sentinel
        info = np.iinfo(arr.dtype)
        lo = int(info.min)
        lut = np.full(int(info.max) - lo + 1, UNLABELLED, dtype=np.uint8)
        for value, cls in mapping.items():
            if info.min <= value <= info.max:
                lut[value - lo] = cls
        out = lut[arr.astype(np.intp) - lo] if lo else lut[arr]
        if out.max() != UNLABELLED:
            return out
        found = np.unique(arr[out == UNLABELLED])
    else:
        arr = arr.astype(np.int64, copy=False)
        found = np.unique(arr)
    bad = [int(v) for v in found if int(v) not in mapping]
    if bad:
        shown = bad if len(bad) <= 20 else [*bad[:20], "..."]
        raise InputError(
            f"label values {shown} are outside the {labels.convention} convention "
            f"(allowed: {sorted(mapping)})",
            case,
            path,
        )
    lut = np.zeros(max(mapping) + 1, dtype=np.uint8)
    for value, cls in mapping.items():
        lut[value] = cls
    return lut[arr]


def as_label_map(labels: LabelMap | dict | str) -> LabelMap:
    """A :class:`LabelMap` from itself, a spec dict or a preset's name."""
    return labels if isinstance(labels, LabelMap) else LabelMap.from_spec(labels)


def to_internal(values: np.ndarray, labels, case=None, path=None) -> np.ndarray:
    """Dataset label values -> internal classes (see :meth:`LabelMap.to_internal`)."""
    return as_label_map(labels).to_internal(values, case, path)


def from_internal(classes: np.ndarray, labels) -> np.ndarray:
    """Internal classes -> dataset values (see :meth:`LabelMap.from_internal`)."""
    return as_label_map(labels).from_internal(classes)


#: overlay colours of the BraTS classes (necrotic, edema, enhancing)
_BRATS_COLOURS = ["#e41a1c", "#4daf4a", "#ffd92f"]


def class_colours(labels) -> list[str]:
    """One overlay colour per class (background transparent): the BraTS colours for the
    BraTS maps, else matplotlib's tab10 / tab20 cycle."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    labels = as_label_map(labels)
    if labels.names[1:] == ("necrotic", "edema", "enhancing"):
        return ["#00000000", *_BRATS_COLOURS]
    cycle = colormaps["tab10" if labels.n_classes <= 11 else "tab20"].colors
    return ["#00000000", *(to_hex(cycle[i % len(cycle)]) for i in range(labels.n_classes - 1))]
