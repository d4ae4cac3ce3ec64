"""QC pictures of a batch of preprocessed cases."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log.batch)  # first: the log holds everything, import errors too
from tumorseg.batches import case_log_paths
from tumorseg.preprocessing.qc import qc_batch

cases = snakemake.params.cases
run_step(
    snakemake.log.batch,
    qc_batch,
    cases=cases,
    case_logs=case_log_paths(cases, snakemake.log.cases),
)
