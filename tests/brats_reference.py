"""The official BraTS evaluation (``brats-evaluation`` on panoptica) as the tests run it: in a
subprocess whose ``PYTHONPATH`` is ``.venv/reference`` (requirements-reference.txt, installed
without its dependencies by the README's test command), through
``tests/reference/brats_official.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / ".venv" / "reference"


def official(challenge: str, files: dict[str, tuple[str, str]], tmp: Path) -> pd.DataFrame:
    """The official package's parsed CSV, one row per case (summary rows dropped)."""
    if not (REFERENCE / "brats_evaluation").is_dir():
        pytest.fail(
            f"the official BraTS evaluation is not installed in {REFERENCE}: run "
            "`.venv/bin/pip install --no-deps --target .venv/reference "
            "-r requirements-reference.txt` (README, test command)"
        )
    cases_json = tmp / f"{challenge}_cases.json"
    cases_json.write_text(
        json.dumps([{"case": c, "pred": p, "ref": r} for c, (p, r) in files.items()])
    )
    out_csv = tmp / f"{challenge}.csv"
    env = {**os.environ, "PYTHONPATH": str(REFERENCE)}
    script = Path(__file__).parent / "reference" / "brats_official.py"
    done = subprocess.run(
        [sys.executable, str(script), challenge, str(cases_json), str(out_csv)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = pd.read_csv(out_csv)
    return table[~table["subject_id"].isin(["mean", "std", "median"])].set_index("subject_id")
