"""One GPU per job: slots on a stand-in list of 4 GPUs, taken by separate processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tumorseg import gpus

SRC = Path(__file__).resolve().parents[1] / "src"

#: a job: takes a slot, writes "<start> <gpu> <end>" (perf_counter of the machine) to its file
JOB = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {src!r})
    from tumorseg.gpus import claim_gpu
    gpu = claim_gpu(poll_s=0.02)
    start = time.monotonic()
    with open(sys.argv[1] + ".claimed", "w") as f:
        f.write(gpu)
    time.sleep(float(sys.argv[2]))
    with open(sys.argv[1], "w") as f:
        f.write(f"{{start}} {{gpu}} {{time.monotonic()}}")
    """
).format(src=str(SRC))


def stand_in_env(slots: Path, devices="0,1,2,3") -> dict:
    env = {k: v for k, v in os.environ.items() if k not in gpus.SCHEDULER_VARS}
    env.update(CUDA_VISIBLE_DEVICES=devices, TUMORSEG_GPU_SLOTS=str(slots))
    return env


def start_job(tmp_path: Path, name: str, env: dict, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", JOB, str(tmp_path / name), str(seconds)], env=env
    )


def wait_for(path: Path, timeout: float = 20.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path.name} was not written within {timeout} s")


def test_six_jobs_on_four_slots_never_share_one(tmp_path):
    env = stand_in_env(tmp_path / "slots")
    jobs = [start_job(tmp_path, f"job{i}", env, 0.6) for i in range(6)]
    for job in jobs:
        assert job.wait(timeout=60) == 0
    spans = []
    for i in range(6):
        start, gpu, end = (tmp_path / f"job{i}").read_text().split()
        spans.append((float(start), gpu, float(end)))
    assert {gpu for _, gpu, _ in spans} <= {"0", "1", "2", "3"}
    for t, _, _ in spans:  # jobs holding a slot at each job's start: at most 4
        assert sum(s <= t < e for s, _, e in spans) <= 4
    for a in spans:  # never two at once on one GPU
        for b in spans:
            if a is not b and a[1] == b[1]:
                assert a[2] <= b[0] or b[2] <= a[0], (a, b)
    assert len({gpu for _, gpu, _ in spans}) == 4  # six jobs spread over every slot


def test_a_killed_job_frees_its_slot(tmp_path):
    env = stand_in_env(tmp_path / "slots")
    holders = [start_job(tmp_path, f"hold{i}", env, 120) for i in range(4)]
    taken = {wait_for(tmp_path / f"hold{i}.claimed"): holders[i] for i in range(4)}
    assert set(taken) == {"0", "1", "2", "3"}
    waiting = start_job(tmp_path, "waiting", env, 0)
    time.sleep(0.5)
    assert not (tmp_path / "waiting.claimed").exists()  # every slot is taken: it waits
    os.kill(taken["2"].pid, signal.SIGKILL)
    try:
        assert wait_for(tmp_path / "waiting.claimed") == "2"
        assert waiting.wait(timeout=20) == 0
    finally:
        for job in holders:
            job.kill()
            job.wait()


@pytest.mark.parametrize(
    "devices, expected",
    [("0,1,2,3", ["0", "1", "2", "3"]), ("2, 3", ["2", "3"]), ("", []), ("-1", [])],
)
def test_usable_gpus_follow_cuda_visible_devices(devices, expected):
    assert gpus.usable_gpus({"CUDA_VISIBLE_DEVICES": devices}) == expected


def test_nothing_is_claimed_for_a_scheduler_job_or_a_single_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv(gpus.SLOTS_DIR_VAR, str(tmp_path / "slots"))
    slurm = {"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_JOB_ID": "17"}
    assert gpus.claim_gpu(slurm) is None and slurm["CUDA_VISIBLE_DEVICES"] == "0,1"
    single = {"CUDA_VISIBLE_DEVICES": "3"}
    assert gpus.claim_gpu(single) is None and single["CUDA_VISIBLE_DEVICES"] == "3"
    assert not (tmp_path / "slots").exists()


def test_a_users_list_is_respected(tmp_path):
    env = stand_in_env(tmp_path / "slots", devices="5,7")
    jobs = [start_job(tmp_path, f"job{i}", env, 0.2) for i in range(3)]
    for job in jobs:
        assert job.wait(timeout=60) == 0
    assert {(tmp_path / f"job{i}").read_text().split()[1] for i in range(3)} == {"5", "7"}
