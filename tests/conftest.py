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


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks (its hook is not trylast)
def pytest_collection_modifyitems(config, items):
    """Keep the tests that share a fixture on one worker when the suite runs in parallel
    (pytest-xdist, ``--dist loadgroup``): every test of the tiny run together, wherever it
    lives, and each module's other tests together (their module-scoped workflow runs are
    then made once). Without xdist the marks change nothing."""
    for item in items:
        group = "tiny_run" if "tiny_run" in item.fixturenames else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group))
