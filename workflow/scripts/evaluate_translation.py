"""Score one synthetic image against the real target (and the baseline and ceiling)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.translation_eval import evaluate_translation_case

inp = snakemake.input
run_step(
    snakemake.log[0],
    evaluate_translation_case,
    case=snakemake.wildcards.case,
    pred_path=inp.pred,
    target_path=inp.ref,
    ceiling_path=inp.ceiling,
    input_paths=list(inp.inputs),
    geometry_json=inp.geometry,
    out_path=snakemake.output.tsv,
    mask_path=inp.get("mask"),
    brain_mask=snakemake.params.brain_mask,
    brain_threshold=snakemake.params.brain_threshold,
)
