"""Safe CSV cells (OWASP CSV injection): text that a spreadsheet would run is neutralised,
numbers in numeric columns stay numbers. Pure functions: no database."""

import csv
import io
from datetime import date
from decimal import Decimal
from types import SimpleNamespace

import pytest

from trialsite.exports import columns
from trialsite.exports.columns import Column, Dataset, ExportContext, ExportOptions, rows
from trialsite.exports.deidentify import age_shown
from trialsite.exports.safe_csv import CsvFile, neutralise, numeric_cell, text_cell


@pytest.mark.parametrize("first", ["=", "+", "-", "@", "\t", "\r", "\n"])
def test_each_dangerous_leading_character_is_neutralised_in_text(first):
    text = f"{first}SUM(A1:A9)"
    assert neutralise(text) == "'" + text
    assert text_cell(text) == "'" + text


@pytest.mark.parametrize("text", ["SUM(1)", "a=b", "", "90+", "肺炎 -2", "'quoted"])
def test_harmless_text_is_unchanged(text):
    assert neutralise(text) == text


@pytest.mark.parametrize(
    "value,cell",
    [(-3, "-3"), (Decimal("-1.50"), "-1.5"), (Decimal("300.0000"), "300"), (0, "0"),
     (Decimal("1E+2"), "100"), (None, "")],
)  # fmt: skip
def test_numbers_in_numeric_columns_keep_their_sign(value, cell):
    assert numeric_cell(value) == cell


def test_text_in_a_numeric_column_is_still_neutralised():
    assert numeric_cell("-1+1") == "'-1+1"
    assert numeric_cell("=1+1") == "'=1+1"


def test_a_dataset_neutralises_text_and_keeps_negative_numbers():
    record = SimpleNamespace(term="=cmd|' /C calc'!A0", days=-2, code="@x", flag=None)
    dataset = Dataset(
        name="probe",
        description="probe",
        columns=(
            Column("term", columns.TEXT, "t", columns.dig("term")),
            Column("days", columns.INTEGER, "d", columns.dig("days")),
            Column("code", columns.CODE, "c", columns.dig("code"), choices=(("@x", "x"),)),
            Column("flag", columns.BOOLEAN, "f", columns.dig("flag")),
        ),
        records=lambda ctx: [record],
        participant_id=lambda r: None,
    )
    context = ExportContext(ExportOptions(datasets=("probe",)))
    assert list(rows(dataset, context)) == [["'=cmd|' /C calc'!A0", "-2", "'@x", ""]]


def test_csv_file_writes_utf8_with_an_optional_bom():
    for bom in (False, True):
        stream = io.BytesIO()
        csv_file = CsvFile(stream, bom=bom)
        csv_file.header(["term"])
        csv_file.write(["肺炎"])
        csv_file.close()
        data = stream.getvalue()
        assert data.startswith(b"\xef\xbb\xbf") is bom
        assert list(csv.reader(io.StringIO(data.decode("utf-8-sig")))) == [["term"], ["肺炎"]]
        assert csv_file.rows == 1


@pytest.mark.parametrize(
    "born,on,shown",
    [
        (date(1936, 3, 11), date(2026, 3, 10), 89),
        (date(1936, 3, 10), date(2026, 3, 10), "90+"),
        (date(1920, 1, 1), date(2026, 3, 10), "90+"),
        (date(2000, 2, 29), date(2026, 2, 28), 25),
    ],
)
def test_ages_over_89_are_90_plus(born, on, shown):
    assert age_shown(born, on) == shown
