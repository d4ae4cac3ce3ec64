"""Honest threads: a step's pools hold to its ``threads:``, and a local run warns when it
is given more cores than the machine has."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from workflow_helpers import ROOT, make_workdir, run_snakemake

from tumorseg.threads import split_threads

PROBE = """
import json, sys
sys.path.insert(0, {src!r})
import SimpleITK as sitk
import tensorflow as tf
from tumorseg.threads import hold_itk, job_threads, split_threads
from tumorseg.inference.predict import configure_threads
hold_itk(job_threads())  # what run_step does first in every step
itk_first = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
overlap, tf_threads, itk_threads = split_threads({threads}, None)
configure_threads(tf_threads, itk_threads)
print(json.dumps({{
    "itk_first": itk_first,
    "intra": tf.config.threading.get_intra_op_parallelism_threads(),
    "inter": tf.config.threading.get_inter_op_parallelism_threads(),
    "itk": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(),
    "overlap": overlap,
}}))
"""


def test_split_of_a_batch_jobs_threads():
    assert split_threads(1, None) == (False, 1, 1)
    assert split_threads(2, None) == (True, 1, 1)
    assert split_threads(4, None) == (True, 3, 1)
    assert split_threads(4, False) == (False, 4, 4)
    assert split_threads(1, True) == (False, 1, 1)  # nothing to overlap with


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_prediction_job_holds_to_its_threads(threads):
    # a fresh process, as Snakemake starts a job: OMP_NUM_THREADS is the job's threads
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="3")
    code = PROBE.format(src=str(ROOT / "src"), threads=threads)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["itk_first"] == threads  # ITK no longer takes one thread per core
    assert got["inter"] == 1
    # the model and the way back share the job's threads, never more
    assert got["intra"] + (got["itk"] if got["overlap"] else 0) <= threads
    assert got["intra"] >= 1 and got["itk"] >= 1


def test_more_cores_than_the_machine_has_is_warned_about(tmp_path):
    have = len(os.sched_getaffinity(0))
    wd = make_workdir(tmp_path / "wf")
    # run_snakemake passes --cores 2 first; a later --cores wins
    over = run_snakemake(
        wd, "-n", "--cores", str(have + 6), "--configfile", "tests/config/tiny.yaml"
    )
    text = over.stdout + over.stderr
    assert f"--cores {have + 6} is more than the {have} CPU cores" in text
    assert f"Pass --cores {have} or --cores all" in text
    fits = run_snakemake(wd, "-n", "--cores", str(have), "--configfile", "tests/config/tiny.yaml")
    assert "CPU cores this machine" not in fits.stdout + fits.stderr


def test_every_rule_states_its_threads():
    # a rule without threads: gets 1; prediction's come from the config (predict.threads)
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = path.read_text()
        n_rules = text.count("\n    rule:") + text.count("\nrule ")
        n_threads = text.count("threads:")
        n_local = text.count("localrule: True")
        assert n_threads + n_local >= n_rules, f"{Path(path).name}: a rule without threads:"


def test_the_job_threads_come_from_snakemake_and_hold_itk(monkeypatch):
    import SimpleITK as sitk

    from tumorseg.threads import hold_itk, job_threads

    for value, expected in (("3", 3), ("", None), ("0", None), ("x", None)):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert job_threads() == expected
    monkeypatch.delenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", raising=False)  # restored after
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    try:
        assert hold_itk(None) is None
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == before
        assert hold_itk(2) == 2
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 2
        assert os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] == "2"
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
