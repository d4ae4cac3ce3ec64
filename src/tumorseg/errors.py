"""Errors a user can act on: each names the case, the file and the problem."""

from __future__ import annotations


class InputError(Exception):
    """Bad input data (sheet, image, label, config value).

    The message always reads ``case <case>: <file>: <problem>`` with the parts known.
    """

    def __init__(self, problem: str, case: str | None = None, path: object = None):
        self.problem = problem
        self.case = case
        self.path = None if path is None else str(path)
        parts = []
        if case is not None:
            parts.append(f"case {case}")
        if self.path is not None:
            parts.append(self.path)
        parts.append(problem)
        super().__init__(": ".join(parts))
