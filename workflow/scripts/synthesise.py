"""Synthesise one case's target modality with one model, on the native grid."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.predict import predict_translation_case

inp = snakemake.input
run_step(
    snakemake.log[0],
    predict_translation_case,
    case=snakemake.wildcards.case,
    model_path=inp.model,
    image_npy=inp.image,
    geometry_json=inp.geometry,
    inputs=list(inp.inputs),
    batch_size=snakemake.params.batch_size,
    out_path=snakemake.output.synthetic,
    mask_path=inp.get("mask"),
    brain_threshold=snakemake.params.brain_threshold,
    scale_json=inp.get("scale"),
    threads=snakemake.threads,
)
