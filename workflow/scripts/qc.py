"""QC picture of one preprocessed case."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.qc import qc_picture

inp = snakemake.input
run_step(snakemake.log[0], qc_picture, inp.image, inp.label, inp.geometry, snakemake.output[0])
