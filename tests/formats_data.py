"""Datasets in the layouts and formats users bring, built from the demo exports: a tissue
parcellation with 22 non-contiguous label values (FreeSurfer-aseg-like) written into
MINC (non-axial voxel order), MHA and NRRD cases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from synth import physical_points

#: 22 non-contiguous label values, as in a FreeSurfer aseg
TISSUE_VALUES = (2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 17, 18, 26, 28, 41, 42, 43, 44, 46, 49, 50, 51)
TISSUE_LABELS = {f"tissue{v:02d}": v for v in TISSUE_VALUES}


def parcellate(seg_path: Path, t1_path: Path) -> None:
    """Overwrite ``seg_path`` with 22 parcels of the brain: 11 angular sectors around the
    brain's centre in the axial plane, above and below it; the same anatomy on every grid
    (parcels are drawn in physical space), background 0 outside the brain."""
    t1 = sitk.ReadImage(str(t1_path))
    brain = sitk.GetArrayFromImage(t1) > 0
    pts = physical_points(t1)
    centre = pts[brain].mean(axis=0)
    rel = pts - centre
    sector = np.floor((np.arctan2(rel[..., 1], rel[..., 0]) + np.pi) / (2 * np.pi) * 11)
    parcel = np.clip(sector, 0, 10).astype(int) + 11 * (rel[..., 2] > 0)
    values = np.where(brain, np.asarray(TISSUE_VALUES)[parcel], 0).astype(np.uint8)
    out = sitk.GetImageFromArray(values)
    out.CopyInformation(t1)
    sitk.WriteImage(out, str(seg_path))


def export(layout: str, outdir: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "tumorseg.demo.layouts", layout, str(outdir), *args],
        check=True,
        capture_output=True,
    )


def write_sheet(folder: Path, sheet: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "tumorseg.io.sheet", str(folder), "-o", str(sheet)],
        check=True,
        capture_output=True,
        text=True,
    )
    return proc.stdout


def tissue_dataset(root: Path, formats=("minc", "mha", "nrrd"), subjects: int = 3) -> Path:
    """One sheet of cases in several formats, each with the tissue parcellation; case and
    subject IDs carry the format so the cases stay distinct. Returns the sheet's path."""
    frames = []
    for fmt in formats:
        export(fmt, root / fmt, "--subjects", str(subjects), "--shrink", "2", "--unlabelled", "0")
        write_sheet(root / fmt, root / f"{fmt}.tsv")
        df = pd.read_csv(root / f"{fmt}.tsv", sep="\t", dtype=str)
        for _, row in df.iterrows():
            parcellate(root / row["seg"], root / row["t1"])
        df["subject"] = fmt + "_" + df["case"].str.split("_").str[1]
        df["case"] = fmt + "_" + df["case"]
        frames.append(df)
    sheet = root / "tissue.tsv"
    pd.concat(frames, ignore_index=True).to_csv(sheet, sep="\t", index=False)
    return sheet
