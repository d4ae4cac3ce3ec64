"""Write the completed sample sheet (case, subject, scanner, labelled) used by splitting."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))
from tumorseg.logs import redirect, run_step

redirect(snakemake.log[0])  # first: the log holds everything, import errors too
from tumorseg.io.sheet import write_completed_sheet

run_step(snakemake.log[0], write_completed_sheet, snakemake.params.table, snakemake.output[0])
