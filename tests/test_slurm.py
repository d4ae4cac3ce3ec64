"""The tiny config through profiles/slurm on a real (single-node) SLURM cluster.

The cluster is installed from Debian's packages and started by the test (tests/slurm_cluster.py;
the node has 2 partitions, ``cpu`` and ``gpu``, and one stand-in GPU). The test skips only where
SLURM cannot be installed (no root, no apt-get, or the install fails).

Checked: every non-local job ran inside a SLURM job (the SLURM job's own log shows it
executing), the per-case jobs were grouped, training and prediction asked for a GPU in the
``gpu`` partition while nothing else did, the model's ``mem_mb``/``runtime`` reached SLURM, and
the results equal the local run's.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from slurm_cluster import ForeignSlurmConfig, SlurmUnavailable, install_slurm, start_cluster
from workflow_helpers import (
    ROOT,
    assert_same_results,
    jobs_in_log,
    make_workdir,
    planned_job_details,
    snakemake_bin,
)

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

TINY = "tests/config/tiny.yaml"
# The plugin's job comment: rule_<rule>_wildcards_<...>, or rule_<group>_<its rules> for groups.
CASE_GROUP = "rule_case_demo_case_preprocess"
# Only what this one-node test cluster needs on top of profiles/slurm: its size, and no
# accounting (so squeue instead of sacct, no account, no 40 s wait before the first check).
TEST_CLUSTER_ARGS = [
    "--cores",
    "2",
    "--resources",
    "gpu=1",
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--slurm-no-account",
    "--slurm-keep-successful-logs",
]


def local_rules() -> set[str]:
    """Rules marked ``localrule: True`` (they run in the main Snakemake process)."""
    found = {"all"}
    for path in [ROOT / "Snakefile", *(ROOT / "workflow" / "rules").glob("*.smk")]:
        rule = None
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*rule\s+(\w+)\s*:", line)
            if match:
                rule = match.group(1)
            elif rule and re.match(r"^\s*localrule\s*:\s*True", line):
                found.add(rule)
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("installing SLURM and starting its daemons needs root; not running as root")
    try:
        install_slurm()
    except SlurmUnavailable as err:
        pytest.skip(f"cannot install SLURM from Debian's packages here: {err}")
    # Installed: from here on a cluster that does not come up is a failure, not a skip.
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"), cpus=2, mem_mb=16000)
    except ForeignSlurmConfig as err:
        pytest.skip(f"this machine has its own SLURM set-up: {err}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The tiny config run through profiles/slurm: (workdir, planned jobs, SLURM jobs)."""
    workdir = make_workdir(tmp_path_factory.mktemp("slurm_wf") / "wf")
    planned = planned_job_details(workdir, "--configfile", TINY)
    cmd = [
        snakemake_bin(),
        "--workflow-profile",
        "profiles/slurm",
        *TEST_CLUSTER_ARGS,
        "--configfile",
        TINY,
    ]
    env = cluster.env()
    env.update(PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(
            f"snakemake under SLURM failed ({proc.returncode}):\n{output[-8000:]}\n{cluster.logs()}"
        )
    jobs = [j for j in cluster.jobs() if j.get("WorkDir") == str(workdir)]
    return workdir, planned, jobs, output


def test_every_job_ran_under_slurm(slurm_run):
    workdir, planned, jobs, output = slurm_run
    assert jobs, "no SLURM job ran in the workdir"
    assert all(j["JobState"] == "COMPLETED" and j["ExitCode"] == "0:0" for j in jobs), jobs
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    assert sorted(submitted) == sorted(j["JobId"] for j in jobs)
    # What each SLURM job executed, from its own log (the jobs' stdout).
    executed = []
    for job in jobs:
        executed += jobs_in_log(Path(job["StdOut"]).read_text(), header="localrule")
    local = local_rules()
    expected = sorted((r, sorted(w.items())) for r, w in planned if r not in local)
    assert len(expected) > 20
    assert sorted((r, sorted(w.items())) for r, w in executed) == expected


def test_per_case_jobs_are_grouped_and_batched(slurm_run):
    _, planned, jobs, _ = slurm_run
    per_rule = Counter(r for r, _ in planned)
    comments = Counter(re.sub(r"_wildcards_.*", "", j["Comment"]) for j in jobs)
    # All cases fit one preprocessing group; prediction, evaluation and the ceiling are one
    # SLURM job per batch (tiny.yaml pins 2 batches, both non-empty).
    batches = {
        f"rule_{step}_b{b}": 1
        for step in ("predict_unet", "evaluate_unet", "ceiling", "qc")
        for b in (0, 1)
    }
    assert comments == Counter(
        {
            CASE_GROUP: 1,
            **batches,
            "rule_train": per_rule["train"],
            "rule_aggregate": per_rule["aggregate"],
        }
    ), comments
    assert sum(comments.values()) < sum(per_rule.values()) / 2


def test_training_and_prediction_asked_for_a_gpu(slurm_run):
    _, _, jobs, _ = slurm_run
    by_kind = {re.sub(r"_wildcards_.*", "", j["Comment"]): j for j in jobs}
    for kind in ("rule_train", "rule_predict_unet_b0", "rule_predict_unet_b1"):
        job = by_kind[kind]
        assert job["Partition"] == "gpu", job
        assert "gpu:1" in job.get("TresPerJob", "") + job.get("TresPerNode", ""), job
    for kind in (CASE_GROUP, "rule_evaluate_unet_b0", "rule_ceiling_b1", "rule_aggregate"):
        job = by_kind[kind]
        assert job["Partition"] == "cpu", job
        assert "gpu" not in job.get("TresPerJob", "") + job.get("TresPerNode", ""), job
    # The model's own requests (tests/config/tiny.yaml: mem_mb 2000, runtime 10, threads 2).
    train = by_kind["rule_train"]
    assert train["MinMemoryNode"] == "2000M"
    assert train["TimeLimit"] == "00:10:00"
    assert train["NumCPUs"] == "2"
    # the profile's `predict` settings reached each batch job; its runtime is the rule's
    predict = by_kind["rule_predict_unet_b0"]
    assert predict["MinMemoryNode"] == "4000M", predict
    assert predict["NumCPUs"] == "2", predict


def test_results_match_the_local_run(slurm_run, tiny_run):
    workdir, _, _, _ = slurm_run
    assert_same_results(tiny_run, workdir)
