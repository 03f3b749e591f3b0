"""The data dictionary, written from the dataset definitions themselves: every column of every
exported CSV has its row here, and nothing else does (a test holds each header to it)."""

from __future__ import annotations

from collections.abc import Iterator

from .columns import DATE, DATETIME, INTEGER, Dataset, ExportOptions

DICTIONARY_COLUMNS = ["dataset", "column", "type", "unit", "allowed_values", "description"]
STUDY_DAY_UNIT = "days from day 0 (the site's date of randomization, else of registration)"


def column_type(kind: str, options: ExportOptions) -> tuple[str, str]:
    """(type, unit override) of a column as this export writes it."""
    if kind in (DATE, DATETIME) and options.date_mode == "study_days":
        return INTEGER, STUDY_DAY_UNIT
    if kind == DATE:
        return "date (ISO 8601, site date)", ""
    if kind == DATETIME:
        return "datetime (ISO 8601, UTC, +00:00)", ""
    return kind, ""


def dictionary_rows(datasets: list[Dataset], options: ExportOptions) -> Iterator[list[str]]:
    """One row per column of each chosen dataset, in the order the CSV writes them."""
    for dataset in datasets:
        for column in dataset.columns_for(options):
            kind, unit = column_type(column.kind, options)
            allowed = " | ".join(f"{code}={label}" for code, label in column.allowed())
            yield [
                dataset.name,
                column.name,
                kind,
                unit or column.unit,
                allowed,
                str(column.description),
            ]
