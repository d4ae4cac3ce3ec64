"""Apply a run's chosen post-processing to a batch of its raw predictions."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log.batch)  # first: the log holds everything, import errors too
from tumorseg.batches import case_log_paths
from tumorseg.postprocessing.run import postprocess_batch

cases = snakemake.params.cases
run_step(
    snakemake.log.batch,
    postprocess_batch,
    cases=cases,
    labels=snakemake.params.labels,
    steps_json=snakemake.input.choice,
    case_logs=case_log_paths(cases, snakemake.log.cases),
)
