"""Train one model (or one cross-validation fold of it); resumes from its checkpoint."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.training.train import train_model

run_step(
    snakemake.log[0],
    train_model,
    splits_path=snakemake.input.splits,
    preprocessed_dir=snakemake.params.preprocessed_dir,
    settings=dict(snakemake.params.settings),
    out_model=snakemake.output.model,
    out_history=snakemake.output.history,
    out_curves=snakemake.output.curves,
    out_summary=snakemake.output.summary,
    out_scale=snakemake.output.get("scale"),
    out_record=snakemake.output.record,
    checkpoint_dir=snakemake.params.checkpoint_dir,
    tensorboard_dir=snakemake.params.tensorboard_dir,
    labels=snakemake.params.labels,
    fold=snakemake.params.fold,
    deterministic=snakemake.params.deterministic,
    threads=snakemake.threads,
    windows=snakemake.params.windows,
)
