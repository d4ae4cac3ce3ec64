"""Score a batch of synthetic images against the real targets (and baseline and ceiling)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log.batch)  # first: the log holds everything, import errors too
from tumorseg.batches import case_log_paths
from tumorseg.evaluation.translation import evaluate_translation_batch

cases = snakemake.params.cases
run_step(
    snakemake.log.batch,
    evaluate_translation_batch,
    cases=cases,
    brain_mask=snakemake.params.brain_mask,
    brain_threshold=snakemake.params.brain_threshold,
    case_logs=case_log_paths(cases, snakemake.log.cases),
)
