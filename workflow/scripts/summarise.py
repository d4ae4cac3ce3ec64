import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.evaluation.aggregate import summary

# every input is a per_case.tsv, aligned with params.models (the run names)
run_step(
    snakemake.log[0],
    summary,
    per_case_tsvs=dict(zip(snakemake.params.models, list(snakemake.input), strict=True)),
    out_summary=snakemake.output.summary,
    out_comparison=snakemake.output.comparison,
    ensembles=snakemake.params.ensembles,
)
