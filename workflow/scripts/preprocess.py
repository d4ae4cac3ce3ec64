"""Preprocess one case: canonical grid, crop, downsample, normalise, slice export."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.preprocessing.preprocess import preprocess_case

inp = snakemake.input
settings = dict(snakemake.params.settings)
run_step(
    snakemake.log[0],
    preprocess_case,
    case=snakemake.wildcards.case,
    inputs={
        "images": None if "image" in inp.keys() else {m: inp[m] for m in settings["modalities"]},
        "image": inp.get("image"),
        "seg": inp.get("seg"),
        "target": inp.get("target"),
        "mask": inp.get("mask"),
    },
    settings=settings,
    outputs=dict(snakemake.output.items()),
    threads=snakemake.threads,
)
