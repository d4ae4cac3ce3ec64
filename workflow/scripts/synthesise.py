"""Synthesise the target modality of a batch of cases with one model, on the native grid."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log.batch)  # first: the log holds everything, import errors too
from tumorseg.batches import case_log_paths
from tumorseg.inference.batch import predict_translation_batch

cases = snakemake.params.cases
run_step(
    snakemake.log.batch,
    predict_translation_batch,
    cases=cases,
    model_path=snakemake.input.model,
    batch_size=snakemake.params.batch_size,
    brain_threshold=snakemake.params.brain_threshold,
    scale_json=snakemake.input.get("scale"),
    threads=snakemake.threads,
    case_logs=case_log_paths(cases, snakemake.log.cases),
)
