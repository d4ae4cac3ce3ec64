"""`--resources gpu=1`: two models never train at once, even with cores to spare."""

import re
import shutil
from datetime import datetime

import pytest
import yaml
from workflow_helpers import snakemake_bin

pytestmark = pytest.mark.slow

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def interval(log_path):
    stamps = [
        datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
        for m in map(STAMP.match, log_path.read_text().splitlines())
        if m
    ]
    return stamps[0], stamps[-1]


def test_two_models_train_one_after_the_other(tiny_run, tmp_path):
    import subprocess

    wd = tmp_path / "wf"
    shutil.copytree(tiny_run, wd, symlinks=True)
    tiny = {
        "depth": 2,
        "base_filters": 4,
        "epochs": 2,
        "steps_per_epoch": 3,
        "batch_size": 8,
        "threads": 1,
        "mem_mb": 1500,
    }
    (wd / "two.yaml").write_text(yaml.safe_dump({"models": {"first": tiny, "second": tiny}}))
    targets = ["results/models/first/model.keras", "results/models/second/model.keras"]
    proc = subprocess.run(
        # targets before --configfile, which takes every value that follows it
        [
            snakemake_bin(),
            *targets,
            "--cores",
            "4",
            "--resources",
            "gpu=1",
            "--configfile",
            "tests/config/tiny.yaml",
            "two.yaml",
        ],
        cwd=wd,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    a = interval(wd / "logs/train/first.log")
    b = interval(wd / "logs/train/second.log")
    assert a[1] <= b[0] or b[1] <= a[0], f"training jobs overlapped: {a} and {b}"
