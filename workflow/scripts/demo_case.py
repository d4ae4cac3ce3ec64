"""Generate one case of the synthetic demo dataset (images and, if labelled, its label)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.demo.phantom import write_case

run_step(
    snakemake.log[0],
    write_case,
    case=snakemake.wildcards.case,
    subject=snakemake.params.subject,
    scanner=snakemake.params.scanner,
    session=int(snakemake.params.session),
    labelled=bool(snakemake.params.labelled),
    outdir=snakemake.params.outdir,
    seed=int(snakemake.params.seed),
    modalities=tuple(snakemake.params.modalities),
)
