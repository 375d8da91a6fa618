"""CSV written for spreadsheets: text cells that a spreadsheet would run as a formula are
neutralised with a leading `'` (OWASP "CSV injection").

Contact names, attributes, URLs and user agents (an open's User-Agent needs no login) end
up in exports; a cell starting `=`, `+`, `-`, `@`, a tab or a carriage return is
evaluated by Excel, LibreOffice and Google Sheets. Numbers are written as they are (a
negative amount is data, not a formula); only text is prefixed. Every CSV the product
writes goes through `writer`, and the imports take the `'` back off (`unneutralise`), so
an export or a rejects file reads back unchanged.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO, Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """The value, with text that a spreadsheet would evaluate prefixed by `'`."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def unneutralise(value: str) -> str:
    """`safe_cell` undone: the `'` we put before a formula start comes off when a file we
    wrote (an export, a rejects file) is imported again."""
    if value[:1] == "'" and value[1:2] in FORMULA_STARTS:
        return value[1:]
    return value


class SafeWriter:
    """`csv.writer` whose rows are neutralised cell by cell."""

    def __init__(self, fh: IO[str]) -> None:
        self._writer = csv.writer(fh)

    def writerow(self, row: Iterable[Any]) -> None:
        """Write one row."""
        self._writer.writerow([safe_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        """Write many rows."""
        for row in rows:
            self.writerow(row)


def writer(fh: IO[str]) -> SafeWriter:
    """A CSV writer for output a person may open in a spreadsheet."""
    return SafeWriter(fh)
