"""The one reader and writer of the workflow's TSV tables, and its JSON writer; the split
table's reader and the summary of several runs' per-case tables (segmentation and
translation alike)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tumorseg.errors import InputError
from tumorseg.io.atomic import atomic_path

#: columns always read as strings (IDs that may look like numbers)
ID_COLUMNS = ("case", "subject", "scanner")


def read_tsv(path: str | Path, what: str, *, text: bool = False) -> pd.DataFrame:
    """Read a TSV table, raising :class:`InputError` (naming ``what``) when it is missing
    or cannot be parsed.

    With ``text`` every cell is a stripped string (empty cells ``''``, ``#`` starts a
    comment, column names stripped): user-written tables such as sample sheets and pinned
    splits. Without it numbers are parsed (empty cells and ``NA`` become NaN) and only
    :data:`ID_COLUMNS` are kept as strings: the workflow's own metric tables.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path=path)
    if text:
        options = {"dtype": str, "keep_default_na": False, "comment": "#"}
    else:
        options = {"dtype": dict.fromkeys(ID_COLUMNS, str)}
    try:
        df = pd.read_csv(path, sep="\t", **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"cannot parse the {what} as TSV ({err})", path=path) from None
    if not text:
        return df
    df.columns = [str(c).strip() for c in df.columns]
    return df.apply(lambda col: col.str.strip())


def write_tsv(df: pd.DataFrame, path: str | Path, na_rep: str = "NA") -> None:
    """Write ``df`` atomically as TSV (no index, ``\\n`` line ends, missing values ``na_rep``)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, na_rep=na_rep, lineterminator="\n")


def write_json(path: str | Path, obj) -> None:
    """Write ``obj`` atomically as indented JSON with sorted keys."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))


def read_splits(splits_tsv: str | Path) -> pd.DataFrame:
    """The split table (``results/splits/splits.tsv``, all strings), checked for the columns
    ``case``, ``subject``, ``scanner``, ``split`` and for one row per case."""
    splits = read_tsv(splits_tsv, "split table", text=True)
    missing = [c for c in ("case", "subject", "scanner", "split") if c not in splits.columns]
    if missing:
        raise InputError(f"split table lacks the columns {missing}", path=splits_tsv)
    dups = sorted(splits.loc[splits["case"].duplicated(), "case"].unique())
    if dups:
        raise InputError(f"split table lists cases more than once: {dups}", path=splits_tsv)
    return splits


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
