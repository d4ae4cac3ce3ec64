"""Score cases with the official BraTS evaluation (``brats-evaluation``), as its command line
does: panoptica with the package's challenge config, the results as JSON, then the package's
parser to CSV. Run by ``tests/test_lesions.py`` in a subprocess whose ``PYTHONPATH`` holds
``.venv/reference`` (requirements-reference.txt).

Usage: python brats_official.py CHALLENGE CASES_JSON OUT_CSV, where CASES_JSON lists
``{"case": ..., "pred": ..., "ref": ...}``.
"""

import json
import sys

from brats_evaluation import (
    config_path,
    evaluate_single_exam,
    parse_mets_results,
    parse_seg_results,
)
from panoptica import Panoptica_Evaluator


def main(challenge: str, cases_json: str, out_csv: str) -> None:
    evaluator = Panoptica_Evaluator.load_from_config(str(config_path(challenge)))
    with open(cases_json) as f:
        cases = json.load(f)
    results = {"metrics": [], "missings": []}
    for case in cases:
        scores = evaluate_single_exam(case["pred"], case["ref"], case["case"], evaluator)
        if "error" in scores:
            raise SystemExit(f"{case['case']}: {scores['error']}")
        results["metrics"].append(scores)
    summary = out_csv + ".json"
    with open(summary, "w") as f:
        # numpy scalars as Python numbers (the package's own dump fails on numpy ints here)
        json.dump(results, f, indent=1, default=lambda value: value.item())
    if challenge == "mets":
        parse_mets_results(
            summary, vol_threshold=20.0, overlap_threshold=0.1, output_csv_path=out_csv
        )
    else:
        parse_seg_results(summary, out_csv)


if __name__ == "__main__":
    main(*sys.argv[1:])
