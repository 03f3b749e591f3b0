"""CSV cells a spreadsheet cannot mistake for a formula (OWASP: CSV injection).

A text cell beginning with =, +, -, @, tab, CR or LF is prefixed with a single quote, so Excel
and LibreOffice show it as text instead of running it. Numbers in numeric columns are written
as they are, so -3 stays -3. UTF-8, with a byte-order mark when asked (Excel then reads Chinese
text correctly).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import BinaryIO

DANGEROUS_FIRST_CHARACTERS = ("=", "+", "-", "@", "\t", "\r", "\n")
BOM = "\ufeff"


def neutralise(text: str) -> str:
    """Text as a spreadsheet shows it: a leading formula character made harmless."""
    if text and text.startswith(DANGEROUS_FIRST_CHARACTERS):
        return "'" + text
    return text


def number_text(value) -> str | None:
    """A real number as plain digits (no exponent, no trailing zeros); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "") else text
    if isinstance(value, float):
        return repr(value)
    return None


def numeric_cell(value) -> str:
    """A cell of a numeric column: the number, or neutralised text if it is not one."""
    if value is None:
        return ""
    text = number_text(value)
    return text if text is not None else neutralise(str(value))


def text_cell(value) -> str:
    return "" if value is None else neutralise(str(value))


class CsvFile:
    """Rows to a binary file as UTF-8 CSV, optionally with a BOM; counts the data rows."""

    def __init__(self, stream: BinaryIO, *, bom: bool = False):
        self._text = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=True)
        self._writer = csv.writer(self._text, lineterminator="\r\n")
        self.rows = 0
        if bom:
            self._text.write(BOM)

    def header(self, names: Sequence[str]) -> None:
        self._writer.writerow([neutralise(n) for n in names])

    def write(self, cells: Sequence[str]) -> None:
        self._writer.writerow(cells)
        self.rows += 1

    def write_all(self, rows: Iterable[Sequence[str]]) -> None:
        for cells in rows:
            self.write(cells)

    def close(self) -> None:
        # Leaves the underlying stream open for the caller (hashing, zipping).
        self._text.flush()
        self._text.detach()
