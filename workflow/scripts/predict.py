"""Predict a batch of cases with one model, or an ensemble's models; write each segmentation
on its native grid."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log.batch)  # first: the log holds everything, import errors too
from tumorseg.batches import case_log_paths
from tumorseg.inference.batch import predict_batch
from tumorseg.io.tables import read_folds

cases = snakemake.params.cases
members = snakemake.params.members  # an ensemble's models, in the order of input.model
if members:
    members = [dict(m, path=p) for m, p in zip(members, snakemake.input.model, strict=True)]
run_step(
    snakemake.log.batch,
    predict_batch,
    cases=cases,
    model_path=members or snakemake.input.model,
    labels=snakemake.params.labels,
    batch_size=snakemake.params.batch_size,
    windows=snakemake.params.windows,
    mirror=tuple(snakemake.params.mirror),
    threads=snakemake.threads,
    case_logs=case_log_paths(cases, snakemake.log.cases),
    folds=read_folds(snakemake.input.splits) if members else None,
)
