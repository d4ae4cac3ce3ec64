"""Preprocess one case: canonical grid, crop, downsample, normalise, slice export."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.preprocess import preprocess_case

inp = snakemake.input
p = snakemake.params
run_step(
    snakemake.log[0],
    preprocess_case,
    case=snakemake.wildcards.case,
    paths=None if "image" in inp.keys() else {m: inp[m] for m in p.modalities},
    image4d=inp.get("image"),
    seg=inp.get("seg"),
    modalities=p.modalities,
    image_channels=p.image_channels,
    convention=p.convention,
    canonical_size=p.canonical_size,
    canonical_spacing=p.canonical_spacing,
    crop_size=p.crop_size,
    crop_mode=p.crop_mode,
    downsample=p.downsample,
    brain_threshold=p.brain_threshold,
    out_image=snakemake.output.image,
    out_label=snakemake.output.label,
    out_slices=snakemake.output.slices,
    out_geometry=snakemake.output.geometry,
    threads=snakemake.threads,
)
