"""The split names every stage uses (stdlib only)."""

#: the splits a labelled case can be dealt to, in order
SPLITS = ("train", "val", "test")
#: the split of cases that are predicted only (no label, or pinned so)
PREDICT = "predict"
#: every split, in the order tables and pictures show them
SPLIT_ORDER = (*SPLITS, PREDICT)
#: the group or scanner of a row over all groups or all scanners, in the split summary and
#: in the metric summaries (no scanner is named so: scanner IDs hold no parentheses)
ALL = "(all)"


def in_split_order(values) -> list:
    """The distinct ``values`` in :data:`SPLIT_ORDER`, any others after them, sorted."""
    values = list(dict.fromkeys(values))
    known = [v for v in SPLIT_ORDER if v in values]
    return known + sorted(v for v in values if v not in SPLIT_ORDER)
