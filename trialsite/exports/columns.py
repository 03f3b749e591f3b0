"""How a dataset is described: its columns (name, kind, unit, allowed values, description,
how each value is read from a record), the options of one export, and how a record becomes CSV
cells. The datasets themselves are in `datasets.py`; the dictionary is written from these
same descriptions (`dictionary.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import QuerySet

from enrollment.models import Participant

from .deidentify import DateMode, Dates
from .safe_csv import numeric_cell, text_cell

# Column kinds, as the dictionary names them.
INTEGER = "integer"
DECIMAL = "decimal"
TEXT = "text"
CODE = "code"
DATE = "date"
DATETIME = "datetime"
BOOLEAN = "boolean"
NUMERIC_KINDS = (INTEGER, DECIMAL)

BOOLEAN_CHOICES = (("true", "Yes"), ("false", "No"))
# Identifiers stored on the participant: never read by a de-identified export.
PARTICIPANT_IDENTIFIERS = ("name", "mrn", "mrn_hash", "contact")
CHUNK = 1000


@dataclass(frozen=True)
class ExportOptions:
    """What one export writes. De-identified, codes, no free text and no BOM by default."""

    datasets: tuple[str, ...]
    labels: bool = False
    bom: bool = False
    date_mode: str = DateMode.AS_RECORDED
    free_text: bool = False
    identified: bool = False
    reason: str = ""
    # None: every site.
    site_ids: frozenset[int] | None = None
    # The randomization lists' audit trail: the administrator's only (allocation concealment).
    include_concealed: bool = False
    # The clinical data as CDISC ODM 1.3.2 XML too (odm.xml, `odm.py`).
    odm: bool = False

    def filters(self) -> dict:
        return {
            "datasets": list(self.datasets),
            "labels": self.labels,
            "bom": self.bom,
            "dates": str(self.date_mode),
            "free_text": self.free_text,
            "identified": self.identified,
            "sites": "all" if self.site_ids is None else sorted(self.site_ids),
            "odm": self.odm,
        }


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    description: Any
    get: Callable[[Any], Any]
    unit: str = ""
    # Pairs (code, label), or a function returning them (codes the protocol defines).
    choices: Any = ()
    free_text: bool = False
    identifier: bool = False

    def allowed(self) -> list[tuple[str, str]]:
        pairs = self.choices() if callable(self.choices) else self.choices
        if self.kind == BOOLEAN:
            pairs = BOOLEAN_CHOICES
        return [(str(code), str(label)) for code, label in pairs]


@dataclass(frozen=True)
class Dataset:
    name: str
    description: Any
    columns: tuple[Column, ...]
    records: Callable[[ExportContext], Iterable[Any]]
    participant_id: Callable[[Any], int | None]
    zone: Callable[[Any], ZoneInfo | None] = lambda record: None

    @property
    def file_name(self) -> str:
        return f"{self.name}.csv"

    def columns_for(self, options: ExportOptions) -> list[Column]:
        return [
            c
            for c in self.columns
            if (options.identified or not c.identifier) and (options.free_text or not c.free_text)
        ]


@dataclass
class ExportContext:
    """One export's options and what it works out once: date handling, label maps."""

    options: ExportOptions
    dates: Dates = field(init=False)
    _day_zeros: dict[int, date] | None = None
    _labels: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def __post_init__(self):
        self.dates = Dates(self.options.date_mode, self.day_zero)

    def scoped(self, queryset: QuerySet, site_field: str) -> QuerySet:
        ids = self.options.site_ids
        return queryset if ids is None else queryset.filter(**{f"{site_field}__in": ids})

    def without_identifiers(self, queryset: QuerySet, prefix: str) -> QuerySet:
        """Identifiers are not even read (nor decrypted) for a de-identified export."""
        if self.options.identified:
            return queryset
        return queryset.defer(*(prefix + name for name in PARTICIPANT_IDENTIFIERS))

    def day_zero(self, participant_id: int) -> date | None:
        """Day 0 of a participant: the site's date of randomization, else of registration.
        Worked out for every participant in one query, the first time it is asked."""
        if self._day_zeros is None:
            self._day_zeros = {}
            rows = Participant.objects.values_list(
                "pk", "registered_at", "site__time_zone", "allocation__randomized_at"
            )
            for pk, registered_at, zone, randomized_at in rows.iterator(chunk_size=CHUNK):
                moment = randomized_at or registered_at
                self._day_zeros[pk] = moment.astimezone(ZoneInfo(zone)).date()
        return self._day_zeros.get(participant_id)

    def labels_of(self, dataset: Dataset, column: Column) -> dict[str, str]:
        key = (dataset.name, column.name)
        if key not in self._labels:
            self._labels[key] = dict(column.allowed())
        return self._labels[key]


# --- Reading values -------------------------------------------------------------------------


def dig(path: str) -> Callable[[Any], Any]:
    """A getter for a dotted path; None when any step is missing."""
    steps = path.split(".")

    def get(record):
        value = record
        for step in steps:
            if value is None:
                return None
            try:
                value = getattr(value, step)
            except ObjectDoesNotExist:
                return None
        return value

    return get


def username(path: str) -> Callable[[Any], Any]:
    user = dig(path)
    return lambda record: u.get_username() if (u := user(record)) is not None else None


def as_decimal(value):
    """An answer stored as text in a screening's JSON, as the number it is."""
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return value


def as_date(value):
    if not value:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return value


def chunked(iterable: Iterable, size: int) -> Iterator[list]:
    iterator = iter(iterable)
    while batch := list(islice(iterator, size)):
        yield batch


# --- Columns every participant's dataset starts with -------------------------------------------


def participant_columns(path: str) -> tuple[Column, ...]:
    prefix = f"{path}." if path else ""
    return (
        Column(
            "study_number",
            TEXT,
            "The participant's study number (site code and number at the site).",
            dig(f"{prefix}study_number"),
        ),
        Column("site_code", TEXT, "The participant's site.", dig(f"{prefix}site.code")),
        Column(
            "site_time_zone",
            TEXT,
            "The site's time zone (IANA name): times are in UTC, dates are the site's.",
            dig(f"{prefix}site.time_zone"),
        ),
    )


def zone_of(path: str) -> Callable[[Any], ZoneInfo | None]:
    site = dig(f"{path}.site" if path else "site")
    return lambda record: s.zone if (s := site(record)) is not None else None


def recorded_columns(at: str = "recorded_at", by: str = "recorded_by") -> tuple[Column, ...]:
    return (
        Column("recorded_at", DATETIME, "When it was entered (UTC).", dig(at)),
        Column(
            "recorded_by",
            TEXT,
            "Username of the staff member who entered it.",
            username(by),
        ),
    )


# --- Cells ----------------------------------------------------------------------------------


def header(dataset: Dataset, options: ExportOptions) -> list[str]:
    return [c.name for c in dataset.columns_for(options)]


def rows(dataset: Dataset, ctx: ExportContext) -> Iterator[list[str]]:
    """The dataset's rows as CSV cells, one record at a time."""
    columns = dataset.columns_for(ctx.options)
    labels = {c.name: ctx.labels_of(dataset, c) for c in columns if c.kind in (CODE, BOOLEAN)}
    for record in dataset.records(ctx):
        pid = dataset.participant_id(record)
        cells = []
        for column in columns:
            value = column.get(record)
            if value is None or value == "":
                cells.append("")
            elif column.kind == DATE and isinstance(value, date):
                cells.append(_date_cell(ctx.dates.date(value, pid)))
            elif column.kind == DATETIME and isinstance(value, datetime):
                cells.append(_date_cell(ctx.dates.moment(value, pid, dataset.zone(record))))
            elif column.kind in (CODE, BOOLEAN):
                code = ("true" if value else "false") if isinstance(value, bool) else str(value)
                shown = labels[column.name].get(code, code) if ctx.options.labels else code
                cells.append(text_cell(shown))
            elif column.kind in NUMERIC_KINDS:
                cells.append(numeric_cell(value))
            else:
                cells.append(text_cell(value))
        yield cells


def _date_cell(value) -> str:
    # A study day is a number (negative before day 0); a date is ISO text, never a formula.
    return "" if value is None else str(value)
