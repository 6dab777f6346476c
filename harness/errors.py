"""User-facing errors.

Every problem with a suite is reported as a `SuiteError` that names the file, the
field path inside it, what was expected, what was found and, where we can guess it,
what to try.  The CLI turns it into exit code 2 before anything is trained or
written to MLflow.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class SuiteError(Exception):
    """A suite file (or something it points to) is invalid."""

    def __init__(self, file: str, field: str, expected: str, found: object, hint: str | None = None):
        self.file, self.field, self.expected, self.found, self.hint = file, field, expected, found, hint
        msg = f"{file}: {field}: expected {expected}, found {_show(found)}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


def _show(found: object) -> str:
    if isinstance(found, str) and found.startswith("<") and found.endswith(">"):
        return found  # already a description such as "<missing>"
    return repr(found)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """'did you mean 'lora'?' for the closest known name, or None."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None
