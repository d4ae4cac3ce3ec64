"""Sample sheets: read, complete and check them before any job runs; write them from folders."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from tumorseg.errors import InputError
from tumorseg.io.layouts import BRATS_MODALITIES, IMAGE_SUFFIXES, LAYOUTS, FolderScan, scan_folder
from tumorseg.io.tables import read_tsv, write_tsv

__all__ = [
    "DEFAULT_SCANNER_REGEX",
    "SAFE_GROUP",
    "SAFE_ID",
    "complete_sheet",
    "read_sheet",
    "scanner_from_case",
    "sheet_from_folder",
]

SAFE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
SAFE_GROUP = re.compile(r"^[A-Za-z0-9_.-]+$")
#: scanner from the case ID: ``TCGA_CS_4941_19960909`` -> ``CS``, ``siteA_sub001`` -> ``siteA``
DEFAULT_SCANNER_REGEX = r"^(?:TCGA[-_])?([A-Za-z0-9]+)[-_]"


def read_sheet(path: str | Path) -> pd.DataFrame:
    """Read a TSV sheet as stripped strings (empty cells become empty strings)."""
    return read_tsv(path, "sample sheet", text=True)


def scanner_from_case(case: str, regex: str) -> str:
    match = re.search(regex, case)
    if match is None:
        return "unknown"
    return match.group(1) if match.groups() else match.group(0)


def _image_columns(df: pd.DataFrame, modalities: list[str], where) -> list[str]:
    if "case" not in df.columns:
        raise InputError("the sample sheet has no `case` column", path=where)
    if "image" in df.columns:
        present = [m for m in modalities if m in df.columns]
        if present:
            raise InputError(
                f"the sheet has both an `image` column and modality columns {present}; use one",
                path=where,
            )
        return ["image"]
    missing = [m for m in modalities if m not in df.columns]
    if missing:
        raise InputError(
            f"the sample sheet lacks the modality columns {missing} "
            f"(config `modalities` is {modalities}; or give one 4D `image` column)",
            path=where,
        )
    return list(modalities)


def _id_problems(df: pd.DataFrame) -> list[str]:
    problems = []
    for i, case in enumerate(df["case"]):
        if not SAFE_ID.match(case):
            problems.append(
                f"row {i + 2}: case ID {case!r} has unsafe characters "
                "(allowed: letters, digits, '_' and '-')"
            )
    dups = sorted(df.loc[df["case"].duplicated(), "case"].unique())
    if dups:
        problems.append(f"duplicate case IDs: {', '.join(dups)}")
    return problems


def _fill_groups(df: pd.DataFrame, scanner_regex: str) -> list[str]:
    """Fill ``subject`` and ``scanner`` in place; return the problems found."""
    for col in ("subject", "scanner", "seg", "mask"):
        if col not in df.columns:
            df[col] = ""
    df["subject"] = df["subject"].where(df["subject"] != "", df["case"])
    derived = df["case"].map(lambda c: scanner_from_case(c, scanner_regex))
    df["scanner"] = df["scanner"].where(df["scanner"] != "", derived)
    problems = []
    for col in ("subject", "scanner"):
        for case, value in zip(df["case"], df[col], strict=True):
            if not SAFE_GROUP.match(value):
                problems.append(f"case {case}: {col} {value!r} has unsafe characters")
    return problems


def _has_suffix(value: str) -> bool:
    return value.lower().endswith(IMAGE_SUFFIXES)


def _stack_rows(df: pd.DataFrame, full: list[str]) -> tuple[list, list]:
    """Which rows' ``image`` is a slice-stack folder; a problem when files and folders mix.

    A value is a folder when it is one on disk, or when it has no image suffix and is no
    file (a folder not found, or not made yet)."""
    stacks = [
        bool(v) and (os.path.isdir(f) or not (_has_suffix(v) or os.path.isfile(f)))
        for v, f in zip(df["image"], full, strict=True)
    ]
    given = [bool(v) for v in df["image"]]
    folders = [c for c, s, g in zip(df["case"], stacks, given, strict=True) if g and s]
    files = [c for c, s, g in zip(df["case"], stacks, given, strict=True) if g and not s]
    problems = []
    if folders and files:
        problems.append(
            "the `image` column mixes slice-stack folders (cases "
            f"{', '.join(folders)}) and image files (cases {', '.join(files)}); "
            "every image must be a file, or every image a folder"
        )
    return stacks, problems


def _path_problem(case, col, value, full, folder_ok, check_files) -> str | None:
    """What is wrong with one path of the sheet (None if nothing)."""
    if folder_ok and (os.path.isdir(full) or not _has_suffix(value)):
        if not check_files or os.path.isdir(full):
            return None
        if os.path.exists(full):
            return (
                f"case {case}: {value}: {col} is neither a slice-stack folder nor a "
                f"supported image file (expected one of {', '.join(IMAGE_SUFFIXES)})"
            )
        return f"case {case}: {full}: {col} folder not found"
    if os.path.isdir(full):
        return (
            f"case {case}: {full}: {col} is a folder, not an image file "
            "(slice-stack folders go in the `image` column, with `seg` beside them)"
        )
    if not _has_suffix(value):
        return (
            f"case {case}: {value}: {col} is not a supported image file "
            f"(expected one of {', '.join(IMAGE_SUFFIXES)})"
        )
    if check_files and not os.path.isfile(full):
        return f"case {case}: {full}: {col} file not found"
    return None


def _resolve_paths(df, image_cols, base, check_files) -> list[str]:
    """Make the path columns absolute in place; return the problems found."""

    def resolve(value: str) -> str:
        if value == "":
            return ""
        p = os.path.expanduser(value)
        return os.path.normpath(p if os.path.isabs(p) else os.path.join(base, p))

    full = {col: [resolve(v) for v in df[col]] for col in [*image_cols, "seg", "mask"]}
    problems: list[str] = []
    stacks = [False] * len(df)
    if image_cols == ["image"]:
        stacks, problems = _stack_rows(df, full["image"])
    for col, paths in full.items():
        for case, value, path, stack in zip(df["case"], df[col], paths, stacks, strict=True):
            if value == "":
                if col not in ("seg", "mask"):
                    problems.append(f"case {case}: no file given for {col}")
                continue
            folder_ok = stack and col in ("image", "seg")
            problem = _path_problem(case, col, value, path, folder_ok, check_files)
            if problem:
                problems.append(problem)
        df[col] = paths
    return problems


def complete_sheet(
    df: pd.DataFrame,
    sheet_dir: str | Path,
    modalities: list[str],
    scanner_regex: str,
    sheet_path: str | Path | None = None,
    check_files: bool = True,
) -> pd.DataFrame:
    """Check a sheet and return it completed.

    Fills ``subject`` (from ``case``) and ``scanner`` (from ``scanner_regex``), makes
    image paths absolute (relative ones are taken from ``sheet_dir``), adds ``labelled``.
    ``image`` values may all be slice-stack folders instead of files (``seg`` then may be a
    folder too); the optional ``mask`` column names a brain-mask file per case ('' for
    none). Every problem found is reported at once, each naming the row's case and the file.
    """
    where = sheet_path if sheet_path is not None else sheet_dir
    image_cols = _image_columns(df, modalities, where)
    if df.empty:
        raise InputError("the sample sheet has no cases", path=where)
    df = df.copy()
    problems = _id_problems(df) + _fill_groups(df, scanner_regex)
    problems += _resolve_paths(df, image_cols, os.path.abspath(sheet_dir), check_files)
    if problems:
        raise InputError("problems in the sample sheet:\n  " + "\n  ".join(problems), path=where)
    df["labelled"] = df["seg"] != ""
    return df.set_index("case", drop=False)


def sheet_from_folder(folder: str | Path, modalities=BRATS_MODALITIES) -> pd.DataFrame:
    """The sheet of a dataset folder in any layout of :data:`LAYOUTS` (absolute paths);
    :func:`scan_folder` also says which layout it is."""
    return scan_folder(folder, modalities).table


def write_completed_sheet(table: dict, path: str | Path) -> None:
    """Write the completed sheet's ``case``, ``subject``, ``scanner``, ``labelled``."""
    df = pd.DataFrame(table)[["case", "subject", "scanner", "labelled"]]
    write_tsv(df, path, na_rep="")


def write_folder_sheet(scan: FolderScan, path: str | Path, scanner: str | None = None) -> Path:
    """Write ``scan.table`` as a TSV sheet with paths relative to the sheet's folder."""
    out = Path(path).resolve()
    df = scan.table.copy()
    for col in df.columns:
        if col not in ("case", "subject", "scanner"):
            df[col] = df[col].map(lambda p: os.path.relpath(p, out.parent) if p else p)
    if scanner:
        if "scanner" in df.columns:
            df["scanner"] = scanner
        else:
            df.insert(1, "scanner", scanner)
    write_tsv(df, out, na_rep="")
    return out


def main(argv: list[str] | None = None) -> int:
    """``tumorseg-sheet FOLDER -o samples.tsv``: write a sheet for a dataset folder, with
    paths relative to the sheet's folder, and say which label convention applies."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(
        prog="tumorseg-sheet",
        description="Write a sample sheet from a dataset folder. Recognised layouts: "
        + "; ".join(f"{lay.title}: {lay.expected}" for lay in LAYOUTS.values())
        + ". Hidden files and macOS ._* twins are ignored.",
    )
    ap.add_argument("folder", help="dataset folder")
    ap.add_argument("-o", "--output", required=True, help="sample sheet to write (TSV)")
    ap.add_argument(
        "--modalities",
        default=",".join(BRATS_MODALITIES),
        help="comma-separated modality names of a BraTS folder (default: %(default)s)",
    )
    ap.add_argument("--scanner", help="scanner value for every case (default: from the case ID)")
    args = ap.parse_args(argv)
    try:
        scan = scan_folder(args.folder, [m for m in args.modalities.split(",") if m])
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    out = write_folder_sheet(scan, args.output, args.scanner)
    print(f"wrote {len(scan.table)} cases to {out}")
    print(scan.layout.advice)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
