"""The real target through downsampling and back: the translation resolution ceiling."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.predict import translation_ceiling_case

inp = snakemake.input
run_step(
    snakemake.log[0],
    translation_ceiling_case,
    case=snakemake.wildcards.case,
    target_npy=inp.target,
    geometry_json=inp.geometry,
    inputs=list(inp.inputs),
    out_path=snakemake.output[0],
    mask_path=inp.get("mask"),
    brain_threshold=snakemake.params.brain_threshold,
)
