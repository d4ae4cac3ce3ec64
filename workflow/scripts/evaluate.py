"""Score a batch of cases' predictions against their references on the native grid."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log.batch)  # first: the log holds everything, import errors too
from tumorseg.batches import case_log_paths
from tumorseg.evaluation.scoring import evaluate_batch

cases = snakemake.params.cases
run_step(
    snakemake.log.batch,
    evaluate_batch,
    cases=cases,
    labels=snakemake.params.labels,
    slice_metrics=snakemake.params.slice_metrics,
    lesion_wise=snakemake.params.lesion_wise,
    case_logs=case_log_paths(cases, snakemake.log.cases),
)
