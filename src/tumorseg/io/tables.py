"""The one reader and writer of the workflow's TSV tables and JSON files, and the split
table's reader."""

from __future__ import annotations

import json
from pathlib import Path

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
    """Write ``obj`` atomically as indented JSON with sorted keys and a final newline."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def read_json(path: str | Path, what: str, case: str | None = None) -> dict:
    """Read a JSON object, raising :class:`InputError` (naming ``what``, the case and the
    file) when it is missing, cannot be parsed or is not an object."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", case, path)
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read the {what} ({err})", case, path) from None
    if not isinstance(obj, dict):
        raise InputError(f"the {what} is not a JSON object", case, path)
    return obj


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


def fold_numbers(splits: pd.DataFrame, splits_tsv: str | Path) -> pd.Series:
    """The ``fold`` column of a loaded split table as integers (-1 for test and predict
    rows, and for every row of a table without folds)."""
    if "fold" not in splits.columns:
        return pd.Series(-1, index=splits.index)
    try:
        return splits["fold"].replace("", "-1").astype(int)
    except ValueError:
        raise InputError("the `fold` column holds non-integers", path=splits_tsv) from None


def read_folds(splits_tsv: str | Path) -> dict[str, int]:
    """Each case's cross-validation fold from the split table (:func:`fold_numbers`)."""
    splits = read_splits(splits_tsv)
    return dict(zip(splits["case"], fold_numbers(splits, splits_tsv).tolist(), strict=True))


def read_run_splits(splits_tsv: str | Path, validation_fold: int | str | None = None):
    """The split table as one run's scores see it. With cross-validation every training
    case is ``train``; a fold run validates on its own fold (``validation_fold`` j: the rows
    of fold j become ``val``) and an ensemble predicts every fold's cases out of fold
    (``"all"``: every row of a fold becomes ``val``). ``None`` keeps the table's splits."""
    splits = read_splits(splits_tsv)
    if validation_fold is None:
        return splits
    fold = fold_numbers(splits, splits_tsv)
    validates = fold >= 0 if validation_fold == "all" else fold == int(validation_fold)
    splits.loc[validates, "split"] = "val"
    return splits
