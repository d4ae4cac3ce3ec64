import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.metrics import evaluate_case

run_step(
    snakemake.log[0],
    evaluate_case,
    case=snakemake.wildcards.case,
    pred_path=snakemake.input.pred,
    ref_path=snakemake.input.ref,
    ceiling_path=snakemake.input.get("ceiling"),
    labels=snakemake.params.labels,
    slice_metrics=snakemake.params.slice_metrics,
    out_path=snakemake.output.tsv,
)
