"""One table of all preprocessed cases (grids, crop losses, label voxels)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.preprocessing.preprocess import summarise

run_step(
    snakemake.log[0],
    summarise,
    list(snakemake.input.geometry),
    list(snakemake.input.slices),
    snakemake.output[0],
)
