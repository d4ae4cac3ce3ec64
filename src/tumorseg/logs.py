"""Logging set-up shared by the workflow's step scripts (stdlib only: import it first).

A step script calls :func:`redirect` on its first lines, before any heavy import, so that
its log holds everything: Python logging and warnings, tracebacks (an import error
included), C/C++ output written to file descriptor 2 (ITK, TensorFlow) and, after a
native crash, the Python stack of every thread (:mod:`faulthandler`). One-line messages
meant for the user go to the *original* stderr as well (:func:`tell_user`), so Snakemake's
output shows them.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import traceback
from collections.abc import Callable

from tumorseg.errors import InputError
from tumorseg.threads import hold_itk, job_threads

log = logging.getLogger("tumorseg")

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: what :func:`redirect` did: the log's absolute path, the original stderr, our handler
_state: dict = {"path": None, "user": None, "handler": None}


def redirect(log_path: str | os.PathLike | None) -> None:
    """Send everything this process writes to stderr, at the OS level, to ``log_path``.

    Truncates the log, points file descriptor 2 (so ``sys.stderr`` and C/C++ code) at
    it, keeps a duplicate of the original stderr for :func:`tell_user`, enables
    :mod:`faulthandler` on it, routes Python warnings and the root logger (hence
    ``tumorseg``) to it. Calling it again with the same path does nothing; without a
    path only the logging is set up (on stderr).
    """
    path = os.path.abspath(log_path) if log_path else None
    if path is not None and path == _state["path"]:
        return
    if path is not None:
        _point_stderr_at(path)
    try:
        faulthandler.enable(file=sys.stderr, all_threads=True)
    except (AttributeError, ValueError, OSError):  # a stderr without a file descriptor
        pass
    logging.captureWarnings(True)
    _log_to_stderr()
    sys.excepthook = _excepthook


def _point_stderr_at(path: str) -> None:
    """dup2 the log onto fd 2 (opened O_APPEND: every writer adds at the end)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sys.stderr.flush()
    if _state["user"] is None:
        _state["user"] = _duplicate_stderr()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 2)
    finally:
        os.close(fd)
    if not _writes_to_fd2(sys.stderr):
        sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)
    _state["path"] = path


def _writes_to_fd2(stream) -> bool:
    try:
        return stream is not None and stream.fileno() == 2
    except (AttributeError, ValueError, OSError):
        return False


def _duplicate_stderr():
    """A line-buffered file on a duplicate of the original fd 2 (None if it was closed)."""
    try:
        fd = os.dup(2)
    except OSError:
        return None
    return open(fd, "w", buffering=1, errors="backslashreplace")


def _log_to_stderr() -> None:
    """One handler on the root logger, writing to ``sys.stderr`` (the log); no duplicates."""
    root = logging.getLogger()
    if _state["handler"] is not None:
        root.removeHandler(_state["handler"])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    _state["handler"] = handler


def _excepthook(exc_type, exc, tb) -> None:
    """An uncaught exception: its traceback in the log, one line for the user."""
    sys.__excepthook__(exc_type, exc, tb)
    if not issubclass(exc_type, KeyboardInterrupt):
        tell_user(f"ERROR: {_one_line(exc)}{_see_log()}")


def _one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (ITK's messages run over many lines)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def _see_log() -> str:
    return f" (traceback in {_state['path']})" if _state["path"] else ""


def tell_user(message: str) -> None:
    """Write one line to the original stderr (Snakemake's output); stderr if none."""
    out = _state["user"] or sys.stderr
    try:
        print(message, file=out, flush=True)
    except (OSError, ValueError):
        pass


def original_stderr():
    """The original stderr kept by :func:`redirect` (``sys.stderr`` before it)."""
    return _state["user"] or sys.stderr


def run_step(log_path: str | None, func: Callable, /, *args, **kwargs):
    """Run one workflow step: log to ``log_path``; a bad input ends with a one-line error.

    Calls :func:`redirect` (a no-op when the script already did). An :class:`InputError`
    is logged (message only, no traceback), also printed as ``ERROR: ...`` to the
    original stderr, and the process exits with status 1, so Snakemake removes the
    step's outputs and reports the failure. Any other exception is logged with its
    traceback (the user gets one line) and exits with status 1.
    """
    redirect(log_path)
    hold_itk(job_threads())  # ITK held to the job's threads before any heavy import
    try:
        return func(*args, **kwargs)
    except InputError as err:
        log.error("%s", err)
        tell_user(f"ERROR: {err}")
        raise SystemExit(1) from None
    except Exception as err:
        log.error("step failed:\n%s", traceback.format_exc())
        tell_user(f"ERROR: step failed: {_one_line(err)}{_see_log()}")
        raise SystemExit(1) from None
