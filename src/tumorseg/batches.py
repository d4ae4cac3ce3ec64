"""One process for a batch of cases: stable batch assignment, per-case logs, a two-stage
pipeline (the model on the next case while the previous one goes back to native space).

A step that pays a large start-up (TensorFlow's import and the model load, or the imports
of the imaging stack) runs once per batch instead of once per case. Which batch a case
belongs to depends on its ID alone (a SHA-256 of it), so adding, removing or changing one
case changes only its batch's job.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tumorseg.errors import InputError
from tumorseg.logs import FORMAT

log = logging.getLogger("tumorseg")


def batch_of(case: str, n_batches: int) -> int:
    """The batch (0 .. n_batches-1) of a case ID: the first 8 bytes of its SHA-256."""
    if n_batches < 1:
        raise ValueError(f"n_batches must be at least 1, got {n_batches}")
    digest = hashlib.sha256(case.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n_batches


#: ``predict.batches: auto``: the most cases a batch job holds before the count doubles
AUTO_CASES_PER_BATCH = 50


def _power_of_two_at_most(n: int) -> int:
    return 1 << (max(1, int(n)).bit_length() - 1)


def auto_batches(n_cases: int, parallel: int) -> int:
    """``predict.batches: auto``: the number of batch jobs for ``n_cases`` cases when
    ``parallel`` jobs can run at once (the cores a local run can use). A power of two: the smallest
    that keeps each batch at :data:`AUTO_CASES_PER_BATCH` cases or fewer, raised to the
    largest power of two up to ``parallel`` so every core has a batch, and never more than
    the cases. The count changes only when a collection crosses a step (50, 100, 200, ...
    cases), so adding a case between steps reruns only its batch."""
    n_cases = max(1, int(n_cases))
    by_size = 1 << max(0, math.ceil(n_cases / AUTO_CASES_PER_BATCH) - 1).bit_length()
    return min(max(by_size, _power_of_two_at_most(parallel)), _power_of_two_at_most(n_cases))


def assign_batches(cases: Iterable[str], n_batches: int) -> dict[int, list[str]]:
    """The non-empty batches, each with its cases sorted by ID (so the sheet's row order
    does not matter)."""
    out: dict[int, list[str]] = {}
    for case in sorted(set(cases)):
        out.setdefault(batch_of(case, n_batches), []).append(case)
    return dict(sorted(out.items()))


def batch_runtime(cases: Sequence[str], minutes: float, per_case: float) -> int:
    """A batch job's wall-time request in minutes: ``minutes`` plus ``per_case`` a case."""
    return int(math.ceil(minutes + per_case * len(cases)))


class BatchError(InputError):
    """Some cases of a batch failed; each failure is in its case's log."""

    def __init__(self, failures: dict[str, str], n_cases: int):
        self.failures = failures
        lines = "; ".join(f"{msg}" for msg in failures.values())
        super().__init__(f"{len(failures)} of {n_cases} cases failed: {lines}")


class _CaseRouter(logging.Handler):
    """Copies each record to the log of the case its thread is working on."""

    def __init__(self):
        super().__init__()
        self.local = threading.local()
        self.files: dict[str, object] = {}
        self.setFormatter(logging.Formatter(FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        stream = self.files.get(getattr(self.local, "case", None))
        if stream is not None:
            stream.write(self.format(record) + "\n")
            stream.flush()


class CaseLogs:
    """Per-case log files for a batch job (each truncated when its case starts); while a
    thread works on a case (:meth:`working_on`), what it logs goes to that case's file as
    well as to the batch log."""

    def __init__(self, paths: dict[str, str] | None):
        self.paths = dict(paths or {})
        self.router = _CaseRouter()

    def __enter__(self):
        logging.getLogger().addHandler(self.router)
        self.level = log.level
        if log.getEffectiveLevel() > logging.INFO:  # the per-case lines are INFO
            log.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        logging.getLogger().removeHandler(self.router)
        log.setLevel(self.level)
        for stream in self.router.files.values():
            stream.close()
        self.router.files.clear()

    def open(self, case: str) -> None:
        path = self.paths.get(case)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.router.files[case] = open(path, "w", encoding="utf-8")  # noqa: SIM115

    def close(self, case: str) -> None:
        stream = self.router.files.pop(case, None)
        if stream is not None:
            stream.close()

    def working_on(self, case: str | None) -> None:
        self.router.local.case = case


def _attempt(logs: CaseLogs, case: str, func: Callable, *args):
    """``func(*args)`` with the thread's records routed to the case's log; ``(True,
    result)`` or ``(False, message)`` (the error logged, with its traceback unless it is
    an :class:`InputError`)."""
    logs.working_on(case)
    try:
        return True, func(*args)
    except InputError as err:
        log.error("%s", err)
        return False, str(err)
    except Exception as err:  # noqa: BLE001  one case's bug must not hide the others'
        log.error("case %s failed:\n%s", case, traceback.format_exc())
        return False, f"case {case}: {type(err).__name__}: {err}"
    finally:
        logs.working_on(None)


def run_batch(
    cases: Sequence[str],
    first: Callable,
    second: Callable | None = None,
    case_logs: dict[str, str] | None = None,
    overlap: bool = True,
) -> None:
    """For every case, ``second(case, first(case))``. With ``overlap``, ``second`` runs in
    one worker thread while this thread runs ``first`` on the next case (at most one case
    waits between them). A failing case is logged and skipped; at the end a
    :class:`BatchError` lists every failed case."""
    failures: dict[str, str] = {}
    second = second or (lambda case, result: result)
    with CaseLogs(case_logs) as logs, ThreadPoolExecutor(1) as pool:
        pending: tuple[str, Future] | None = None
        for case in cases:
            logs.open(case)
            ok, result = _attempt(logs, case, first, case)
            if pending is not None:
                _finish(logs, pending, failures)
                pending = None
            if not ok:
                failures[case] = result
                logs.close(case)
                continue
            job = pool.submit(_attempt, logs, case, second, case, result)
            pending = (case, job)
            if not overlap:
                _finish(logs, pending, failures)
                pending = None
        if pending is not None:
            _finish(logs, pending, failures)
    if failures:
        raise BatchError(failures, len(cases))


def for_each_case(
    cases: Sequence[dict], func: Callable, case_logs: dict[str, str] | None = None, **common
) -> None:
    """``func(**case, **common)`` for each case dict of a batch (its ID under ``"case"``),
    one after another, as :func:`run_batch` runs them (per-case logs, failures listed at
    the end)."""
    by_id = {c["case"]: c for c in cases}
    run_batch(
        list(by_id), lambda case: func(**by_id[case], **common), case_logs=case_logs, overlap=False
    )


def case_log_paths(cases: Sequence[dict], paths: Sequence[str]) -> dict[str, str]:
    """The per-case logs of a batch job: case ID -> its log path (``paths`` in the order of
    ``cases``, as the batch rules list them)."""
    return dict(zip([c["case"] for c in cases], paths, strict=True))


def _finish(logs: CaseLogs, pending: tuple[str, Future], failures: dict[str, str]) -> None:
    case, job = pending
    ok, result = job.result()
    if not ok:
        failures[case] = result
    logs.close(case)
