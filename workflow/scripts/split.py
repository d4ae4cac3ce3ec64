import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.splitting.splits import run

run_step(
    snakemake.log[0],
    run,
    sheet_path=snakemake.input.sheet,
    ratios=dict(snakemake.params.ratios),
    seed=snakemake.params.seed,
    cv_folds=snakemake.params.cv_folds,
    pinned_path=snakemake.params.pinned or None,
    out_splits=snakemake.output.splits,
    out_summary=snakemake.output.summary,
    out_plot=snakemake.output.plot,
)
