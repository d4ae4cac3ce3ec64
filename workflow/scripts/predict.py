"""Predict a batch of cases with one model; write each segmentation on its native grid."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log.batch)  # first: the log holds everything, import errors too
from tumorseg.batches import case_log_paths
from tumorseg.inference.batch import predict_batch

cases = snakemake.params.cases
run_step(
    snakemake.log.batch,
    predict_batch,
    cases=cases,
    model_path=snakemake.input.model,
    labels=snakemake.params.labels,
    batch_size=snakemake.params.batch_size,
    windows=snakemake.params.windows,
    mirror=tuple(snakemake.params.mirror),
    threads=snakemake.threads,
    case_logs=case_log_paths(cases, snakemake.log.cases),
)
