"""Predict one case with one model and write the segmentation on the native grid."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.predict import predict_case

inp = snakemake.input
run_step(
    snakemake.log[0],
    predict_case,
    case=snakemake.wildcards.case,
    model_path=inp.model,
    image_npy=inp.image,
    geometry_json=inp.geometry,
    reference=inp.reference,
    labels=snakemake.params.labels,
    batch_size=snakemake.params.batch_size,
    windows=snakemake.params.windows,
    out_seg=snakemake.output.seg,
    out_probs=snakemake.output.get("probs"),
    threads=snakemake.threads,
)
