"""Sample sheets: read, complete and check them before any job runs; write them from folders."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from .errors import InputError

SAFE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
SAFE_GROUP = re.compile(r"^[A-Za-z0-9_.-]+$")
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mnc", ".mha", ".mhd", ".nrrd", ".nhdr")


def read_sheet(path: str | Path) -> pd.DataFrame:
    """Read a TSV sheet as strings (empty cells become empty strings)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("sample sheet not found", path=path)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"cannot parse the sample sheet as TSV ({err})", path=path) from None
    df.columns = [str(c).strip() for c in df.columns]
    return df.apply(lambda col: col.str.strip())


def scanner_from_case(case: str, regex: str) -> str:
    match = re.search(regex, case)
    if match is None:
        return "unknown"
    return match.group(1) if match.groups() else match.group(0)


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
    Every problem found is reported at once, each naming the row's case and the file.
    """
    where = sheet_path if sheet_path is not None else sheet_dir
    sheet_dir = Path(sheet_dir)
    if "case" not in df.columns:
        raise InputError("the sample sheet has no `case` column", path=where)
    four_d = "image" in df.columns
    if four_d:
        image_cols = ["image"]
        present = [m for m in modalities if m in df.columns]
        if present:
            raise InputError(
                f"the sheet has both an `image` column and modality columns {present}; use one",
                path=where,
            )
    else:
        missing = [m for m in modalities if m not in df.columns]
        if missing:
            raise InputError(
                f"the sample sheet lacks the modality columns {missing} "
                f"(config `modalities` is {modalities}; or give one 4D `image` column)",
                path=where,
            )
        image_cols = list(modalities)
    if df.empty:
        raise InputError("the sample sheet has no cases", path=where)

    df = df.copy()
    problems: list[str] = []
    for i, case in enumerate(df["case"]):
        if not SAFE_ID.match(case):
            problems.append(
                f"row {i + 2}: case ID {case!r} has unsafe characters "
                "(allowed: letters, digits, '_' and '-')"
            )
    dups = sorted(df.loc[df["case"].duplicated(), "case"].unique())
    if dups:
        problems.append(f"duplicate case IDs: {', '.join(dups)}")

    if "subject" not in df.columns:
        df["subject"] = ""
    df["subject"] = df["subject"].where(df["subject"] != "", df["case"])
    if "scanner" not in df.columns:
        df["scanner"] = ""
    derived = df["case"].map(lambda c: scanner_from_case(c, scanner_regex))
    df["scanner"] = df["scanner"].where(df["scanner"] != "", derived)
    for col in ("subject", "scanner"):
        for case, value in zip(df["case"], df[col], strict=True):
            if not SAFE_GROUP.match(value):
                problems.append(f"case {case}: {col} {value!r} has unsafe characters")
    if "seg" not in df.columns:
        df["seg"] = ""

    def resolve(value: str) -> str:
        p = os.path.expanduser(value)
        return os.path.normpath(p if os.path.isabs(p) else os.path.join(base, p))

    base = os.path.abspath(sheet_dir)
    for col in [*image_cols, "seg"]:
        resolved = []
        for case, value in zip(df["case"], df[col], strict=True):
            if value == "":
                if col != "seg":
                    problems.append(f"case {case}: no file given for {col}")
                resolved.append("")
                continue
            if not value.lower().endswith(IMAGE_SUFFIXES):
                problems.append(
                    f"case {case}: {value}: {col} is not a supported image file "
                    f"(expected one of {', '.join(IMAGE_SUFFIXES)})"
                )
            full = resolve(value)
            resolved.append(full)
            if check_files and not os.path.isfile(full):
                problems.append(f"case {case}: {full}: {col} file not found")
        df[col] = resolved
    if problems:
        raise InputError("problems in the sample sheet:\n  " + "\n  ".join(problems), path=where)
    df["labelled"] = df["seg"] != ""
    return df.set_index("case", drop=False)


def sheet_from_folder(folder: str | Path, modalities: list[str]) -> pd.DataFrame:
    """Build a sheet from a BraTS folder (``<case>/<case>_<mod>.nii.gz``) or a Decathlon
    folder (``imagesTr/``, ``labelsTr/``, optional ``imagesTs/``). Paths are absolute."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise InputError("not a folder", path=folder)
    if (folder / "imagesTr").is_dir():
        rows = []
        for sub, labelled in (("imagesTr", True), ("imagesTs", False)):
            for img in sorted((folder / sub).glob("*.nii*")):
                if img.name.startswith("."):
                    continue
                case = img.name.split(".nii")[0]
                case = re.sub(r"_0000$", "", case)
                seg = folder / "labelsTr" / img.name if labelled else None
                rows.append(
                    {
                        "case": case,
                        "image": str(img),
                        "seg": str(seg) if seg is not None and seg.is_file() else "",
                    }
                )
        if not rows:
            raise InputError("no images found under imagesTr/", path=folder)
        return pd.DataFrame(rows)
    rows = []
    for case_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        case = case_dir.name
        row = {"case": case}
        for mod in [*modalities, "seg"]:
            hits = [
                case_dir / f"{case}_{mod}{ext}"
                for ext in IMAGE_SUFFIXES
                if (case_dir / f"{case}_{mod}{ext}").is_file()
            ]
            if not hits and mod != "seg":
                raise InputError(
                    f"no {mod} file found (expected {case}_{mod}.nii.gz)", case, case_dir
                )
            row[mod] = str(hits[0]) if hits else ""
        rows.append(row)
    if not rows:
        raise InputError("no case folders found", path=folder)
    return pd.DataFrame(rows)


def write_completed_sheet(table: dict, path: str | Path) -> None:
    """Write the completed sheet's ``case``, ``subject``, ``scanner``, ``labelled``."""
    from .atomic import atomic_path

    df = pd.DataFrame(table)[["case", "subject", "scanner", "labelled"]]
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False)


def main(argv: list[str] | None = None) -> int:
    """``tumorseg-sheet FOLDER -o samples.tsv``: write a sheet for a BraTS or Decathlon
    folder, with paths relative to the sheet's folder."""
    import argparse
    import os
    import sys

    from .atomic import atomic_path

    ap = argparse.ArgumentParser(
        prog="tumorseg-sheet",
        description="Write a sample sheet from a BraTS folder (<case>/<case>_<modality>.nii.gz) "
        "or a Medical Segmentation Decathlon folder (imagesTr/, labelsTr/, imagesTs/).",
    )
    ap.add_argument("folder", help="dataset folder")
    ap.add_argument("-o", "--output", required=True, help="sample sheet to write (TSV)")
    ap.add_argument(
        "--modalities",
        default="flair,t1,t1ce,t2",
        help="comma-separated modality names of a BraTS folder (default: %(default)s)",
    )
    ap.add_argument("--scanner", help="scanner value for every case (default: from the case ID)")
    args = ap.parse_args(argv)
    try:
        df = sheet_from_folder(args.folder, args.modalities.split(","))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    out = Path(args.output).resolve()
    for col in df.columns:
        if col != "case":
            df[col] = df[col].map(lambda p: os.path.relpath(p, out.parent) if p else p)
    if args.scanner:
        df.insert(1, "scanner", args.scanner)
    with atomic_path(out) as tmp:
        df.to_csv(tmp, sep="\t", index=False)
    print(f"wrote {len(df)} cases to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
