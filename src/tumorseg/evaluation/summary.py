"""Summary statistics of a metric column, and the summary of several runs' per-case tables
(segmentation and translation alike)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tumorseg.errors import InputError
from tumorseg.io.tables import read_tsv, write_tsv


def describe(values: pd.Series) -> dict:
    """``n``, ``mean``, sample ``std`` (ddof=1; NaN for one value), ``median`` and quartiles
    ``q1``, ``q3`` (linear interpolation) of the numeric, non-missing ``values``; ``{}``
    when there are none."""
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if v.size == 0:
        return {}
    with np.errstate(invalid="ignore"):  # a PSNR may be inf (a perfect case)
        q1, median, q3 = np.percentile(v, [25, 50, 75])
        std = float(v.std(ddof=1)) if v.size > 1 else float("nan")
        return {
            "n": int(v.size),
            "mean": float(v.mean()),
            "std": std,
            "median": float(median),
            "q1": float(q1),
            "q3": float(q3),
        }


def summarise_runs(
    per_case_tsvs: dict[str, str],
    required: Sequence[str],
    summarise_one: Callable[[pd.DataFrame, str], pd.DataFrame],
    compare_all: Callable[[dict[str, pd.DataFrame]], pd.DataFrame],
    summary_columns: Sequence[str],
    out_summary: str | Path,
    out_comparison: str | Path,
) -> None:
    """Read several runs' per-case tables (``{run: path}``), each checked for the
    ``required`` columns; write ``summarise_one(table, run)`` of every run (in sorted order)
    to ``out_summary`` (the header ``summary_columns`` alone when there is nothing) and
    ``compare_all({run: table})`` to ``out_comparison``."""
    tables = {}
    for model, path in per_case_tsvs.items():
        table = read_tsv(path, f"per-case table of run {model}")
        missing = [c for c in required if c not in table]
        if missing:
            raise InputError(f"per-case table lacks the columns {missing}", path=path)
        tables[model] = table
    parts = [summarise_one(tables[m], m) for m in sorted(tables)]
    parts = [p for p in parts if not p.empty]
    stats = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=list(summary_columns))
    )
    write_tsv(stats, out_summary)
    write_tsv(compare_all(tables), out_comparison)
