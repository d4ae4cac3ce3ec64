"""The reference labels of a batch of cases sent through downsampling and back: the
resolution ceiling."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log.batch)  # first: the log holds everything, import errors too
from tumorseg.batches import case_log_paths
from tumorseg.inference.ceiling import ceiling_batch

cases = snakemake.params.cases
run_step(
    snakemake.log.batch,
    ceiling_batch,
    cases=cases,
    labels=snakemake.params.labels,
    threads=snakemake.threads,
    case_logs=case_log_paths(cases, snakemake.log.cases),
)
