"""Logging set-up shared by the workflow's step scripts."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable

from .errors import InputError

log = logging.getLogger("tumorseg")


def setup(log_path: str | None) -> None:
    """Send stderr and the ``tumorseg`` logger to ``log_path`` (and keep stderr for errors)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def run_step(log_path: str | None, func: Callable, /, *args, **kwargs):
    """Run one workflow step: log to ``log_path``; a bad input ends with a one-line error.

    An :class:`InputError` is logged (message only, no traceback) and the process exits
    with status 1, so Snakemake removes the step's outputs and reports the failure.
    Any other exception is logged with its traceback and exits with status 1.
    """
    setup(log_path)
    try:
        return func(*args, **kwargs)
    except InputError as err:
        log.error("%s", err)
        print(f"ERROR: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception:
        log.error("step failed:\n%s", traceback.format_exc())
        raise SystemExit(1) from None
