"""Write a trained model's bundle.json and model card."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.bundle.card import write_bundle

run_step(
    snakemake.log[0],
    write_bundle,
    manifest=dict(snakemake.params.manifest),
    paths={
        "model": snakemake.input.model,
        "training": snakemake.input.record,
        "splits": snakemake.input.splits,
        "sheet": snakemake.input.sheet,
        "per_case": snakemake.input.per_case,
        "preprocessed_dir": snakemake.params.preprocessed_dir,
    },
    config_digest=snakemake.params.config_digest,
    repo=Path(snakemake.scriptdir).resolve().parents[1],
    out={"manifest": snakemake.output.manifest, "card": snakemake.output.card},
)
