"""Errors that reach the user as one line.

Every problem with what a user wrote (a case file, a model spec, a command-line option) is raised as
:class:`InputError`, which knows the file, the field, what was found and what is allowed. The CLI
prints ``str(error)`` on one line and exits with status 2; it never shows a traceback for these.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class TruecountError(Exception):
    """Base class of every error truecount raises on purpose."""


class InputError(TruecountError, ValueError):
    """A value in a file or an option that truecount cannot use.

    Parameters
    ----------
    where
        The file (a path) or the option (e.g. ``"--lines"``) that holds the bad value.
    field
        The field inside the file, dotted with indices (``"claims[2].value"``); empty for a
        problem with the whole file.
    found
        What was found, already short enough to print (use :func:`show`).
    expected
        What is allowed, phrased so that it reads after "expected".
    fix
        Optional advice on how to fix it, one sentence.

    """

    def __init__(
        self,
        where: str | Path,
        field: str,
        found: str,
        expected: str,
        fix: str | None = None,
    ) -> None:
        self.where = str(where)
        self.field = field
        self.found = found
        self.expected = expected
        self.fix = fix
        super().__init__(self._line())

    def _line(self) -> str:
        location = f"{self.where}: {self.field}" if self.field else self.where
        line = f"{location}: found {self.found}; expected {self.expected}"
        if self.fix:
            line += f". {self.fix}"
        # One line, whatever the pieces contained.
        return " ".join(line.split())


def show_choices(items: Iterable[str], limit: int = 8) -> str:
    """``'a', 'b', 'c'`` for the allowed values in a message; a long list is cut after ``limit``."""
    names = [show(i, 30) for i in items]
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} in all)"


def show(value: object, limit: int = 60) -> str:
    """Render a found value for an error message: repr, shortened to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
