import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

REAL_DATA = ROOT.parent / "shared" / "data" / "real"
REAL_CASES = ["TCGA-DU-7294", "TCGA-FG-6692"]


@pytest.fixture
def real_data():
    """The two real BraTS cases beside the checkout (../shared/data/real)."""
    if not all((REAL_DATA / c).is_dir() for c in REAL_CASES):
        pytest.skip(f"real data not found at {REAL_DATA}: the two real cases are not available")
    return REAL_DATA


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole workflow run once on the tiny config (shared by the workflow tests)."""
    from workflow_helpers import make_workdir, run_snakemake

    workdir = make_workdir(tmp_path_factory.mktemp("tiny") / "wf")
    run_snakemake(workdir, "--configfile", "tests/config/tiny.yaml")
    return workdir
