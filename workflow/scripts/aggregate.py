import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.evaluation.aggregate import aggregate_run

run_step(
    snakemake.log[0],
    aggregate_run,
    case_tsvs=snakemake.input.cases,
    splits_tsv=snakemake.input.splits,
    per_case_out=snakemake.output.per_case,
    boxplots_out=snakemake.output.boxplots,
    overlays_out=snakemake.output.overlays,
    model=snakemake.wildcards.model,
    validation_fold=snakemake.params.validation_fold,
    labels=snakemake.params.labels,
    overlay_cases=snakemake.params.overlay_cases,
    images=snakemake.input.get("images", []),
    refs=snakemake.input.get("refs", []),
    preds=snakemake.input.get("preds", []),
    uncertainties=snakemake.input.get("uncertainties", []),
)
