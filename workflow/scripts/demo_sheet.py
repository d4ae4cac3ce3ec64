"""Write the sample sheet of the synthetic demo dataset (rebuilt from the config's values)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.demo import write_demo_sheet

run_step(
    snakemake.log[0],
    write_demo_sheet,
    path=snakemake.output[0],
    # the cases' folder; by default the sheet's own folder (<demo.outdir>/samples.tsv)
    outdir=getattr(snakemake.params, "outdir", str(Path(snakemake.output[0]).parent)),
    n_scanners=int(snakemake.params.n_scanners),
    n_subjects=int(snakemake.params.n_subjects),
    n_second_sessions=int(snakemake.params.n_second_sessions),
    n_unlabelled=int(snakemake.params.n_unlabelled),
    modalities=tuple(snakemake.params.modalities),
)
