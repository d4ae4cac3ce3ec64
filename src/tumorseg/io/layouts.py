"""Recognise the dataset layouts ``tumorseg-sheet`` reads, from the files themselves.

Layouts: BraTS 2017-2021 (``<case>/<case>_<mod>.nii.gz``), BraTS 2023+
(``<ID>/<ID>-{t2f,t1n,t1c,t2w}.nii.gz``), the Medical Segmentation Decathlon (``imagesTr/``,
``labelsTr/``, ``imagesTs/``) and the TCGA LGG slice collection
(``<patient>/<patient>_<k>.tif`` + ``_mask.tif``). Folder names are never trusted: the kind of
each case folder is decided by the files it holds. Hidden files and macOS ``._*`` AppleDouble
twins (and ``__MACOSX/``) are ignored everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tumorseg.errors import InputError

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mnc", ".mha", ".mhd", ".nrrd", ".nhdr")
#: the slice files of the LGG layout (a slice stack elsewhere may also be PNG:
#: :data:`tumorseg.io.slices.SLICE_SUFFIXES`)
LGG_SUFFIXES = (".tif", ".tiff")
#: the four modalities of the BraTS layouts, in the order cases list them by default
BRATS_MODALITIES = ("flair", "t1", "t1ce", "t2")
#: BraTS 2023+ file names of the BraTS 2017-2021 modalities
BRATS2023_NAMES = {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w"}
DECATHLON_DIRS = ("imagesTr", "labelsTr", "imagesTs")


@dataclass(frozen=True)
class Layout:
    name: str
    title: str
    label_convention: str
    expected: str

    @property
    def advice(self) -> str:
        """The one line telling the user which label convention applies."""
        return f"{self.title} layout: set label_convention: {self.label_convention} in your config"


LAYOUTS = {
    "brats2021": Layout(
        "brats2021",
        "BraTS 2017-2021",
        "brats2017",
        "<case>/<case>_{flair,t1,t1ce,t2}.nii.gz (+ <case>_seg.nii.gz)",
    ),
    "brats2023": Layout(
        "brats2023",
        "BraTS 2023+",
        "brats2023",
        "<ID>/<ID>-{t2f,t1n,t1c,t2w}.nii.gz (+ <ID>-seg.nii.gz)",
    ),
    "decathlon": Layout(
        "decathlon",
        "Medical Segmentation Decathlon",
        "decathlon",
        "imagesTr/<case>.nii.gz (4D), labelsTr/<case>.nii.gz, optional imagesTs/",
    ),
    "lgg": Layout(
        "lgg",
        "LGG slice collection",
        "binary",
        "<patient>/<patient>_<k>.tif with <patient>_<k>_mask.tif, k = 1, 2, ...",
    ),
}

#: TCGA patient folder of the LGG collection: TCGA_<TSS>_<participant>[_<scan date>]
_TCGA_ID = re.compile(r"^(TCGA[_-]([A-Za-z0-9]{2})[_-][A-Za-z0-9]{4})(?:[_-]\d{8})?$")
#: BraTS 2023 ID: BraTS-<cohort>-<patient>-<timepoint>
_BRATS2023_ID = re.compile(r"^(BraTS-[A-Za-z]+-\d+)-\d+$")


@dataclass(frozen=True)
class FolderScan:
    """What :func:`scan_folder` found: the layout and one row per case (absolute paths)."""

    layout: Layout
    table: pd.DataFrame


def visible(path: Path) -> bool:
    """False for hidden files, macOS ``._*`` twins and ``__MACOSX`` folders."""
    return not path.name.startswith(".") and path.name != "__MACOSX"


def entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if visible(p))


def image_suffix(name: str) -> str | None:
    """The image suffix (of :data:`IMAGE_SUFFIXES`) ``name`` ends with, else None."""
    low = name.lower()
    return next((s for s in IMAGE_SUFFIXES if low.endswith(s)), None)


def _kind(folder: Path) -> str | None:
    """``"brats"`` (image files), ``"lgg"`` (tif slices), ``"mixed"`` (both) or None."""
    files = [p for p in entries(folder) if p.is_file()]
    has_tif = any(p.name.lower().endswith(LGG_SUFFIXES) for p in files)
    has_img = any(image_suffix(p.name) for p in files)
    if has_tif and has_img:
        return "mixed"
    return "lgg" if has_tif else "brats" if has_img else None


def _tried() -> str:
    return "; ".join(f"{lay.title}: {lay.expected}" for lay in LAYOUTS.values())


def _names(paths: list[Path], limit: int = 5) -> str:
    names = [p.name for p in paths[:limit]]
    return ", ".join(names) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def scan_folder(folder: str | Path, modalities=BRATS_MODALITIES) -> FolderScan:
    """Recognise the layout of ``folder`` and list its cases.

    ``modalities`` names the modality columns of a BraTS folder (2023+ names are found
    for the standard four). Raises :class:`InputError` for an empty folder, an unknown
    layout (naming the layouts tried), mixed layouts or a case that breaks its layout.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise InputError("not a folder", path=folder)
    found = entries(folder)
    if not found:
        raise InputError(
            f"the folder is empty; expected one of the layouts {_tried()}", path=folder
        )
    subdirs = [p for p in found if p.is_dir()]
    if any(p.name in DECATHLON_DIRS for p in subdirs):
        others = [p for p in subdirs if p.name not in DECATHLON_DIRS and _kind(p)]
        if others:
            raise InputError(
                f"mixed layouts: Decathlon folders ({', '.join(DECATHLON_DIRS)}) beside case "
                f"folders ({_names(others)}); keep one dataset per folder",
                path=folder,
            )
        return FolderScan(LAYOUTS["decathlon"], _decathlon(folder))
    kinds = {p: _kind(p) for p in subdirs}
    cases = [p for p, k in kinds.items() if k]
    if not cases:
        raise _unknown(folder, found)
    _check_kinds(folder, kinds)
    if kinds[cases[0]] == "lgg":
        return FolderScan(LAYOUTS["lgg"], pd.DataFrame([_lgg_patient(p) for p in cases]))
    return _brats(folder, cases, tuple(modalities))


def _check_kinds(folder: Path, kinds: dict[Path, str | None]) -> None:
    mixed = [p for p, k in kinds.items() if k == "mixed"]
    if mixed:
        raise InputError(
            "holds both tif slices and image volumes (mixed layouts); keep one kind per dataset",
            mixed[0].name,
            mixed[0],
        )
    lgg = [p for p, k in kinds.items() if k == "lgg"]
    brats = [p for p, k in kinds.items() if k == "brats"]
    if lgg and brats:
        raise InputError(
            f"mixed layouts: tif slice folders ({_names(lgg)}) beside image-volume case "
            f"folders ({_names(brats)}); keep one dataset per folder",
            path=folder,
        )
    empty = [p for p, k in kinds.items() if k is None]
    if empty:
        expected = LAYOUTS["lgg" if lgg else "brats2021"].expected
        raise InputError(
            f"case folders without image files: {_names(empty)} (expected {expected}; "
            "remove or fill them)",
            path=folder,
        )


def _unknown(folder: Path, found: list[Path]) -> InputError:
    files = [p for p in found if p.is_file()]
    dirs = [p for p in found if p.is_dir()]
    seen = []
    if files:
        seen.append(f"files {_names(files)}")
    if dirs:
        seen.append(f"folders without image files {_names(dirs)}")
    hint = ""
    if any(image_suffix(p.name) or p.name.lower().endswith(LGG_SUFFIXES) for p in files):
        hint = "; the images lie directly in the folder: give each case its own folder"
    deeper = [d for d in dirs if any(_kind(s) for s in entries(d) if s.is_dir())]
    deeper += [d for d in dirs if any((d / n).is_dir() for n in DECATHLON_DIRS)]
    if deeper:
        hint += f"; the dataset may lie one level down: point at {deeper[0]}"
    return InputError(
        f"no known dataset layout (found {'; '.join(seen)}); tried {_tried()}{hint}",
        path=folder,
    )


# --------------------------------------------------------------------------- BraTS


def _brats_hits(case_dir: Path, mod: str, files: set[str]) -> list[tuple[Path, str | None]]:
    """Files of ``mod`` among ``files`` (the names in ``case_dir``) with their style
    (brats2021, brats2023 or None)."""
    case = case_dir.name
    names = [mod] + ([BRATS2023_NAMES[mod]] if mod in BRATS2023_NAMES else [])
    hits = []
    for name in names:
        for sep in ("_", "-"):
            style = "brats2023" if sep == "-" or name != mod else "brats2021"
            if mod == "seg" and sep == "_":
                style = None  # <case>_seg is in both namings
            for ext in IMAGE_SUFFIXES:
                if f"{case}{sep}{name}{ext}" in files:
                    hits.append((case_dir / f"{case}{sep}{name}{ext}", style))
    return hits


def _brats_case(case_dir: Path, modalities: tuple[str, ...]) -> tuple[dict, str]:
    """One BraTS case folder: its row (absolute paths) and its style."""
    case = case_dir.name
    files = {p.name for p in entries(case_dir) if p.is_file()}
    hits = {m: _brats_hits(case_dir, m, files) for m in [*modalities, "seg"]}
    for mod, found in hits.items():
        if len(found) > 1:
            raise InputError(
                f"more than one {mod} file: {_names([p for p, _ in found])} (keep one)",
                case,
                case_dir,
            )
    styles = {style for found in hits.values() for _, style in found} - {None}
    if len(styles) > 1:
        raise InputError(
            "mixes BraTS 2017-2021 names (<case>_flair) and BraTS 2023+ names "
            "(<ID>-t2f, or the '-' separator); use one naming",
            case,
            case_dir,
        )
    style = styles.pop() if styles else "brats2021"
    for mod, found in hits.items():
        if not found and mod != "seg":
            name = BRATS2023_NAMES.get(mod, mod) if style == "brats2023" else mod
            sep = "-" if style == "brats2023" else "_"
            present = [p for p in entries(case_dir) if p.is_file()]
            raise InputError(
                f"no {mod} file found (expected {case}{sep}{name}.nii.gz; "
                f"found {_names(present) or 'nothing'})",
                case,
                case_dir,
            )
    row = {"case": case, **{m: str(f[0][0]) if f else "" for m, f in hits.items()}}
    return row, style


def _brats(folder: Path, cases: list[Path], modalities: tuple[str, ...]) -> FolderScan:
    rows, styles = [], {}
    for case_dir in cases:
        row, style = _brats_case(case_dir, modalities)
        rows.append(row)
        styles.setdefault(style, []).append(case_dir)
    if len(styles) > 1:
        raise InputError(
            "mixed layouts: BraTS 2017-2021 names in cases "
            f"{_names(styles['brats2021'])}, BraTS 2023+ names in cases "
            f"{_names(styles['brats2023'])}; keep one dataset per folder",
            path=folder,
        )
    style = next(iter(styles))
    df = pd.DataFrame(rows, columns=["case", *modalities, "seg"])
    if style == "brats2023":
        subjects = [_BRATS2023_ID.match(c) for c in df["case"]]
        if any(subjects):
            df.insert(1, "subject", [m.group(1) if m else "" for m in subjects])
    return FolderScan(LAYOUTS[style], df)


# --------------------------------------------------------------------------- Decathlon


def _decathlon(folder: Path) -> pd.DataFrame:
    if not (folder / "imagesTr").is_dir():
        raise InputError(
            "a Decathlon folder needs imagesTr/ (found "
            f"{', '.join(n for n in DECATHLON_DIRS if (folder / n).is_dir())})",
            path=folder,
        )
    rows = []
    for sub, labelled in (("imagesTr", True), ("imagesTs", False)):
        if not (folder / sub).is_dir():
            continue
        for img in entries(folder / sub):
            ext = image_suffix(img.name)
            if ext is None or not img.is_file():
                continue
            case = re.sub(r"_0000$", "", img.name[: -len(ext)])
            seg = _decathlon_label(folder / "labelsTr", case, img.name) if labelled else ""
            rows.append({"case": case, "image": str(img), "seg": seg})
    if not rows:
        raise InputError(
            "no images found under imagesTr/ (expected imagesTr/<case>.nii.gz)", path=folder
        )
    return pd.DataFrame(rows, columns=["case", "image", "seg"])


def _decathlon_label(labels: Path, case: str, image_name: str) -> str:
    for name in [image_name, *(case + ext for ext in IMAGE_SUFFIXES)]:
        if (labels / name).is_file():
            return str(labels / name)
    return ""


# --------------------------------------------------------------------------- LGG


def _lgg_patient(folder: Path) -> dict:
    """One LGG patient folder: ``<patient>_<k>.tif`` slices and ``_mask.tif`` masks."""
    patient = folder.name
    pattern = re.compile(rf"^{re.escape(patient)}_([1-9][0-9]*)(_mask)?\.tif$")
    images, masks = {}, {}
    for path in entries(folder):
        if not (path.is_file() and path.name.lower().endswith(LGG_SUFFIXES)):
            continue
        match = pattern.match(path.name)
        if match is None:
            raise InputError(
                f"not a slice of this patient (expected {patient}_<k>.tif or "
                f"{patient}_<k>_mask.tif with k = 1, 2, ... not zero-padded)",
                patient,
                path,
            )
        (masks if match.group(2) else images)[int(match.group(1))] = path
    if not images:
        raise InputError(f"mask files but no slices (expected {patient}_<k>.tif)", patient, folder)
    orphans = sorted(set(masks) - set(images))
    if orphans:
        path = masks[orphans[0]]
        raise InputError(f"mask without a slice {patient}_{orphans[0]}.tif", patient, path)
    unmasked = sorted(set(images) - set(masks))
    if masks and unmasked:
        raise InputError(
            f"slice without a mask {patient}_{unmasked[0]}_mask.tif (the other slices have "
            "masks; give every slice one or none)",
            patient,
            images[unmasked[0]],
        )
    match = _TCGA_ID.match(patient)
    return {
        "case": patient,
        "subject": match.group(1) if match else "",
        "scanner": match.group(2) if match else "",
        "image": str(folder),
        "seg": str(folder) if masks else "",
    }
