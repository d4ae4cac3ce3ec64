"""Batch jobs: stable assignment of cases, per-case logs, the two-stage pipeline, errors,
and batched predictions identical to one-case predictions."""

from __future__ import annotations

import hashlib
import logging
import threading
import time

import nibabel as nib
import numpy as np
import pytest
from synth import preprocess, write_case
from training_fixtures import save_tiny_unet

from tumorseg.batches import (
    BatchError,
    assign_batches,
    batch_of,
    batch_runtime,
    case_log_paths,
    for_each_case,
    run_batch,
)
from tumorseg.errors import InputError

log = logging.getLogger("tumorseg")


def test_batch_of_is_a_sha256_of_the_id_not_pythons_hash():
    for case in ["BraTS_001", "TCGA_CS_4941", "sub-01_ses-2", "x"]:
        digest = hashlib.sha256(case.encode()).digest()
        assert batch_of(case, 7) == int.from_bytes(digest[:8], "big") % 7
    # pinned: the same on every machine and Python version
    assert [batch_of(c, 4) for c in ["BraTS_001", "BraTS_002", "a", "case-1"]] == [0, 1, 2, 2]
    assert batch_of("anything", 1) == 0
    with pytest.raises(ValueError):
        batch_of("a", 0)


def test_adding_or_removing_a_case_changes_only_its_batch():
    cases = [f"case{i:04d}" for i in range(500)]
    before = assign_batches(cases, 8)
    assert sorted(c for members in before.values() for c in members) == cases
    assert len(before) == 8 and min(len(m) for m in before.values()) > 30  # spread out
    after = assign_batches([*cases, "new_case"], 8)
    changed = {b for b in after if after[b] != before.get(b)}
    assert changed == {batch_of("new_case", 8)}
    fewer = assign_batches(cases[1:], 8)
    assert {b for b in before if before[b] != fewer.get(b)} == {batch_of(cases[0], 8)}
    # the sheet's row order does not matter, and empty batches are left out
    assert assign_batches(reversed(cases), 8) == before
    assert len(assign_batches(["a", "b"], 50)) <= 2
    assert batch_runtime(cases[:100], 10, 0.2) == 30


def _run(tmp_path, cases, first, second=None, overlap=True):
    logs = {c: str(tmp_path / f"{c}.log") for c in cases}
    run_batch(cases, first, second, logs, overlap)
    return {c: (tmp_path / f"{c}.log").read_text() for c in cases}


def test_second_stage_overlaps_the_next_first_stage_and_keeps_order(tmp_path):
    events, lock = [], threading.Lock()

    def note(what):
        with lock:
            events.append((what, threading.current_thread().name))

    def first(case):
        note(f"first {case} start")
        time.sleep(0.05)
        log.info("model pass of %s", case)
        note(f"first {case} end")
        return case.upper()

    def second(case, result):
        note(f"second {case} start")
        time.sleep(0.08)
        log.info("writing %s from %s", case, result)
        note(f"second {case} end")

    texts = _run(tmp_path, ["a", "b", "c"], first, second)
    order = [e for e, _ in events]
    # b's model pass starts before a's write has ended: the stages overlap
    assert order.index("first b start") < order.index("second a end")
    # the second stage runs one case at a time, in order, in one other thread
    seconds = [e for e in order if e.startswith("second")]
    assert seconds == [f"second {c} {w}" for c in "abc" for w in ("start", "end")]
    assert {t for e, t in events if e.startswith("second")} != {threading.current_thread().name}
    # each case's log holds its own lines only, from both threads
    assert "model pass of a" in texts["a"] and "writing a from A" in texts["a"]
    assert "b" not in texts["a"].replace("tumorseg", "")
    assert "writing c from C" in texts["c"] and "model pass of b" not in texts["c"]


def test_without_overlap_the_stages_alternate(tmp_path):
    order = []
    _run(
        tmp_path,
        ["a", "b"],
        lambda c: order.append(f"first {c}"),
        lambda c, r: order.append(f"second {c}"),
        overlap=False,
    )
    assert order == ["first a", "second a", "first b", "second b"]


def test_failed_cases_are_all_reported_and_the_others_still_done(tmp_path):
    done = []

    def first(case):
        if case == "bad_input":
            raise InputError("cannot read the image", case, "/data/bad_input_t1.nii.gz")
        return case

    def second(case, result):
        if case == "buggy":
            raise ZeroDivisionError("division by zero")
        done.append(case)

    cases = ["a", "bad_input", "buggy", "z"]
    logs = {c: str(tmp_path / f"{c}.log") for c in cases}
    with pytest.raises(BatchError) as err:
        run_batch(cases, first, second, logs)
    message = str(err.value)
    assert message.startswith("2 of 4 cases failed")
    assert "case bad_input: /data/bad_input_t1.nii.gz: cannot read the image" in message
    assert "case buggy: ZeroDivisionError" in message
    assert done == ["a", "z"]
    assert "cannot read the image" in (tmp_path / "bad_input.log").read_text()
    assert "Traceback" in (tmp_path / "buggy.log").read_text()
    assert "Traceback" not in (tmp_path / "bad_input.log").read_text()  # a user error
    assert isinstance(err.value, InputError)  # run_step reports it in one line


def test_for_each_case_passes_each_dict_and_the_common_arguments(tmp_path):
    calls = []

    def step(case, image, labels):
        if image is None:
            raise InputError("no image", case)
        calls.append((case, image, labels))
        log.info("scored %s", case)

    cases = [{"case": "p1", "image": "p1.nii"}, {"case": "p2", "image": None}]
    paths = [str(tmp_path / "p1.log"), str(tmp_path / "p2.log")]
    logs = case_log_paths(cases, paths)
    assert logs == {"p1": paths[0], "p2": paths[1]}
    with pytest.raises(BatchError, match="1 of 2 cases failed: case p2: no image"):
        for_each_case(cases, step, logs, labels="brats2017")
    assert calls == [("p1", "p1.nii", "brats2017")]
    assert "scored p1" in (tmp_path / "p1.log").read_text()
    assert "no image" in (tmp_path / "p2.log").read_text()
    with pytest.raises(ValueError):  # a rule that lists fewer logs than cases
        case_log_paths(cases, paths[:1])


RAS = {
    "size": (100, 90, 60),
    "spacing": (2.0, 2.0, 2.5),
    "origin": (99.0, 89.0, -70.0),
    "direction": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
}


@pytest.fixture(scope="module")
def three_cases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batch_predict")
    cases = []
    for i, case in enumerate(["b1", "b2", "b3"]):
        grid = {**RAS, "origin": (99.0 + i, 89.0, -70.0 - 3 * i)}
        paths = write_case(tmp / "data", case, grid)
        _, out = preprocess(case, paths, tmp / case)
        cases.append((case, paths, out))
    return tmp, cases, save_tiny_unet(tmp / "model.keras")


def _job(case, paths, out, folder, tag="", outputs=("seg",), reference=None):
    """One case's arguments of ``predict_batch``: its preprocessed arrays, its reference and
    the ``outputs`` (``seg``, ``probs``, ``uncertainty``) under ``folder``."""
    names = {"seg": "seg", "probs": "probs", "uncertainty": "entropy"}
    return {
        "case": case,
        "image_npy": out["image.npy"],
        "geometry_json": out["geometry.json"],
        "reference": reference or paths["flair"],
        **{f"out_{o}": str(folder / f"{tag}{case}_{names[o]}.nii.gz") for o in outputs},
    }


@pytest.mark.parametrize("threads", [1, 2])
def test_a_batch_writes_what_one_case_jobs_write(three_cases, tmp_path, threads):
    from tumorseg.inference.batch import predict_batch
    from tumorseg.inference.predict import predict_case

    _, cases, model = three_cases
    jobs = []
    for case, paths, out in cases:
        single = tmp_path / f"{case}_single.nii.gz"
        predict_case(
            case, model, out["image.npy"], out["geometry.json"], paths["flair"],
            "brats2017", 16, str(single), threads=threads,
        )  # fmt: skip
        jobs.append(_job(case, paths, out, tmp_path, outputs=("seg", "probs")))
    logs = {c: str(tmp_path / f"{c}.log") for c, _, _ in cases}
    predict_batch(jobs, model, "brats2017", 16, threads=threads, case_logs=logs)
    for (case, paths, _), job in zip(cases, jobs, strict=True):
        single = nib.load(tmp_path / f"{case}_single.nii.gz")
        batched = nib.load(job["out_seg"])
        assert np.array_equal(np.asarray(single.dataobj), np.asarray(batched.dataobj))
        assert (tmp_path / f"{case}_single.nii.gz").read_bytes() == open(  # noqa: SIM115
            job["out_seg"], "rb"
        ).read()
        ref = nib.load(paths["flair"])
        assert batched.shape == ref.shape and np.allclose(batched.affine, ref.affine, atol=1e-4)
        assert nib.load(job["out_probs"]).shape[:3] == ref.shape
        assert f"case {case}: predicted in" in (tmp_path / f"{case}.log").read_text()


def test_an_ensemble_of_one_model_twice_writes_the_models_prediction(three_cases, tmp_path):
    """An ensemble whose members are the same model (two folds, and a test case predicted by
    both) writes the single model's segmentation and probabilities, on the native grid; a
    case of fold 1 is predicted by fold 1's member only (out of fold)."""
    from tumorseg.inference.batch import predict_batch

    _, cases, model = three_cases
    members = [
        {"name": "unet", "fold": k, "path": model, "windows": None, "mirror": []} for k in (0, 1)
    ]

    def jobs(tag):
        outputs = ("seg", "probs", "uncertainty")
        return [_job(c, paths, out, tmp_path, f"{tag}_", outputs) for c, paths, out in cases]

    logs = {c: str(tmp_path / f"{c}.log") for c, _, _ in cases}
    predict_batch(jobs("one"), model, "brats2017", 16, threads=1)
    folds = {"b1": -1, "b2": 1, "b3": 0}
    predict_batch(jobs("ens"), members, "brats2017", 16, threads=1, folds=folds, case_logs=logs)
    for case, paths, _ in cases:
        one = nib.load(tmp_path / f"one_{case}_seg.nii.gz")
        ens = nib.load(tmp_path / f"ens_{case}_seg.nii.gz")
        assert np.array_equal(np.asarray(one.dataobj), np.asarray(ens.dataobj))
        ref = nib.load(paths["flair"])
        assert ens.shape == ref.shape and np.allclose(ens.affine, ref.affine, atol=1e-4)
        p_one = nib.load(tmp_path / f"one_{case}_probs.nii.gz").get_fdata()
        p_ens = nib.load(tmp_path / f"ens_{case}_probs.nii.gz").get_fdata()
        np.testing.assert_allclose(p_ens, p_one, atol=1e-6)
        entropy = nib.load(tmp_path / f"ens_{case}_entropy.nii.gz")
        assert entropy.shape == ref.shape and np.allclose(entropy.affine, ref.affine, atol=1e-4)
    log = (tmp_path / "b2.log").read_text()
    assert log.count(model) == 1  # fold 1's member alone
    assert (tmp_path / "b1.log").read_text().count(model) == 2


def test_a_bad_case_in_a_batch_names_itself_and_the_others_are_written(three_cases, tmp_path):
    from tumorseg.inference.batch import predict_batch

    _, cases, model = three_cases
    wrong = cases[0][1]["flair"]  # b2 gets b1's image as its reference
    jobs = [
        _job(case, paths, out, tmp_path, reference=wrong if case == "b2" else None)
        for case, paths, out in cases
    ]
    with pytest.raises(BatchError, match=r"1 of 3 cases failed: case b2: .*rerun preprocessing"):
        predict_batch(jobs, model, "brats2017", 16, threads=1)
    assert (tmp_path / "b1_seg.nii.gz").is_file() and (tmp_path / "b3_seg.nii.gz").is_file()
    assert not (tmp_path / "b2_seg.nii.gz").exists()


def test_auto_batches_grow_in_powers_of_two_of_about_50_cases():
    from tumorseg.batches import AUTO_CASES_PER_BATCH, auto_batches

    assert [auto_batches(n, 1) for n in (1, 50, 51, 100, 101, 200, 201)] == [1, 1, 2, 2, 4, 4, 8]
    assert auto_batches(1250, 2) == 32 and auto_batches(1251, 8) == 32
    assert auto_batches(25, 2) == 2 and auto_batches(25, 8) == 8 and auto_batches(25, 6) == 4
    assert auto_batches(3, 16) == 2  # never more batches than cases
    counts = [auto_batches(n, 2) for n in range(1, 5001)]
    for n, (a, b) in enumerate(zip(counts, counts[1:], strict=False), start=1):
        assert b == a or b == 2 * a  # one case more: the same count, or a step
        assert n / a <= AUTO_CASES_PER_BATCH or a == 1
        if b != a:  # the steps lie where a batch would pass 50 cases
            assert (n + 1) / a > AUTO_CASES_PER_BATCH or a < 2
