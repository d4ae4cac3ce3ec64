"""The reference label sent through downsampling and back: the resolution ceiling."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.predict import ceiling_case

inp = snakemake.input
run_step(
    snakemake.log[0],
    ceiling_case,
    case=snakemake.wildcards.case,
    label_npy=inp.label,
    geometry_json=inp.geometry,
    reference=inp.reference,
    labels=snakemake.params.labels,
    out_seg=snakemake.output[0],
)
