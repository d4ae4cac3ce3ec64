"""Per-case table, box plots and case pictures of one translation model run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.evaluation.translation import aggregate_translation_run

inp = snakemake.input
run_step(
    snakemake.log[0],
    aggregate_translation_run,
    case_tsvs=list(inp.cases),
    splits_tsv=inp.splits,
    per_case_out=snakemake.output.per_case,
    boxplots_out=snakemake.output.boxplots,
    overlays_out=snakemake.output.overlays,
    model=snakemake.wildcards.model,
    validation_fold=snakemake.params.validation_fold,
    cases=snakemake.params.overlay_cases,
    images=list(inp.images),
    targets=list(inp.refs),
    preds=list(inp.preds),
    geometries=list(inp.geometries),
)
