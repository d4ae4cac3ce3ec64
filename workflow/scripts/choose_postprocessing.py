"""Choose a run's post-processing on its validation predictions."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.postprocessing.run import choose_for_run

run_step(
    snakemake.log[0],
    choose_for_run,
    run=snakemake.wildcards.model,
    cases=snakemake.params.cases,
    preds=list(snakemake.input.preds),
    refs=list(snakemake.input.refs),
    splits_tsv=snakemake.input.splits,
    labels=snakemake.params.labels,
    out_json=snakemake.output.choice,
    validation_fold=snakemake.params.validation_fold,
    min_volumes=snakemake.params.min_volumes,
    relabel_volumes=snakemake.params.relabel_volumes,
)
