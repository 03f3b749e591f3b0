"""PostgreSQL's own CSV writer for the datasets that are projections of tables: the rows
streamed by `COPY (SELECT ...) TO STDOUT WITH CSV` (psycopg2's `copy_expert`), never turned
into Python objects, byte for byte what the ORM path (`columns.rows`) writes.

Each projection gives, for every column of its dataset, the SQL of the raw value; how a value
becomes its cell is worked out here from the column's kind, as `columns.rows` does it in
Python: codes (or their labels), `true`/`false`, numbers without trailing zeros, ISO dates,
UTC times with `+00:00` (seconds, no fraction), empty for unanswered (never `""`), and a text
cell beginning with a formula character prefixed with `'` (`safe_csv.neutralise`). Shifted
dates and study days read each participant's shift or day 0 from a temporary table filled
from the export's own `Dates` (so both paths shift by the same secret days).

PostgreSQL ends a CSV record with LF where the ORM path (Python's csv) writes CRLF:
`CrlfRecords` rewrites the record ends (outside quoted cells) as it streams, and counts them.

A dataset without a projection here, or one whose columns the projection does not all cover
(a column added to `datasets.py` later), takes the ORM path: slower, never different.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from typing import BinaryIO

from django.contrib.auth import get_user_model
from django.db import connection

from arms.models import Allocation, Arm, Stratum
from dosing.models import DoseSchedule, ScheduledDose
from enrollment.models import Participant
from outcomes import rules as outcome_rules
from outcomes.models import ScheduledVisit, VisitDefinition, VisitRecord
from trialsite.core.models import Site

from .columns import (
    BOOLEAN,
    CODE,
    DATE,
    DATETIME,
    DECIMAL,
    INTEGER,
    TEXT,
    Column,
    Dataset,
    ExportContext,
    ExportOptions,
)
from .deidentify import DateMode
from .safe_csv import DANGEROUS_FIRST_CHARACTERS, CsvFile

# Bytes handed to the destination at a time (psycopg2 writes one row per call).
FLUSH_BYTES = 256 * 1024
SORT_MEMORY = "256MB"
# Above any participant number at a site (a positive 32-bit integer column).
PARTICIPANTS_PER_SITE_BOUND = 2**32


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


@dataclass(frozen=True)
class Projection:
    """`joins`: FROM and JOIN clauses, with the participant as `p` and the site as `s`;
    `values`: column name -> SQL of its raw value; `order_by`: the ORM path's order."""

    joins: str
    values: dict[str, str]
    order_by: str


def _participant_values() -> dict[str, str]:
    return {
        "study_number": "p.study_number",
        "site_code": "s.code",
        "site_time_zone": "s.time_zone",
    }


def _participant_joins(first: str, alias: str) -> str:
    return (
        f"{first} JOIN {_table(Participant)} p ON p.id = {alias}.participant_id "
        f"JOIN {_table(Site)} s ON s.id = p.site_id"
    )


def _scheduled_doses() -> Projection:
    return Projection(
        joins=(
            _participant_joins(f"{_table(ScheduledDose)} d", "d")
            + f" JOIN {_table(DoseSchedule)} ds ON ds.id = d.schedule_id"
            f" JOIN {_table(Arm)} a ON a.id = ds.arm_id"
        ),
        values={
            "dose_id": "d.id",
            **_participant_values(),
            "arm_code": "a.code",
            "product": "ds.product",
            "route": "ds.route",
            "dose_number": "d.sequence",
            "study_day": "d.study_day",
            "due_at": "d.due_at",
            "window_start": "d.window_start",
            "window_end": "d.window_end",
            "planned_amount": "d.planned_amount",
            "amount_unit": "d.amount_unit",
            "amount_note": "d.amount_note",
            "status": "d.status",
        },
        order_by="s.code, p.sequence, d.due_at, d.schedule_id, d.sequence",
    )


def _allocations() -> Projection:
    user = _table(get_user_model())
    return Projection(
        joins=(
            _participant_joins(f"{_table(Allocation)} al", "al")
            + f" JOIN {_table(Arm)} a ON a.id = al.arm_id"
            f" JOIN {_table(Stratum)} st ON st.id = al.stratum_id"
            f" LEFT JOIN {user} u ON u.id = al.randomized_by_id"
        ),
        values={
            **_participant_values(),
            "arm_code": "a.code",
            "stratum_code": "st.code",
            "severity": "st.severity",
            "randomization_number": "al.randomization_number",
            "randomized_at": "al.randomized_at",
            "randomized_by": "u.username",
            "status": "al.status",
            "error_reason": "al.error_reason",
            "marked_in_error_at": "al.marked_in_error_at",
        },
        order_by="s.code, p.sequence",
    )


def _fraction(fio2: str) -> str:
    """outcomes.rules.normalise_fio2 in SQL (round() on numeric is half away from zero:
    ROUND_HALF_UP for these positive values)."""
    low, high = outcome_rules.FIO2_MIN, outcome_rules.FIO2_MAX
    return (
        f"CASE WHEN {fio2} BETWEEN {low} AND {high} THEN round({fio2}, 2) "
        f"WHEN {fio2} BETWEEN {low * 100} AND {high * 100} THEN round({fio2} / 100, 2) END"
    )


def _visits() -> Projection:
    user = _table(get_user_model())
    values = {
        "visit_id": "v.id",
        **_participant_values(),
        "visit_code": "vd.code",
        "study_day": "v.study_day",
        "due_on": "v.due_on",
        "window_start": "v.window_start",
        "window_end": "v.window_end",
        "status": "v.status",
        "days_outside_window": "v.days_outside_window",
        "stopped_reason": "v.stopped_reason",
        "visit_date": "r.visit_date",
    }
    text_fields = {f.name for f in VisitRecord._meta.fields if f.get_internal_type() == "CharField"}
    for name in outcome_rules.MEASURED_FIELDS:
        values[name] = f"r.{name}"
        # datasets._measured_status: not answered (None, or '' for a choice) is empty.
        empty = f"r.{name} IS NULL" + (f" OR r.{name} = ''" if name in text_fields else "")
        values[f"{name}_status"] = (
            f"CASE WHEN r.id IS NULL THEN NULL WHEN r.{name}_not_done THEN 'not_done' "
            f"WHEN {empty} THEN NULL ELSE 'done' END"
        )
        values[f"{name}_not_done_reason"] = f"r.{name}_not_done_reason"
    values.update(
        {
            "pf_ratio": f"round(r.pao2 / ({_fraction('r.fio2')}))::integer",
            "discharged_on": "r.discharged_on",
            "vital_status": "r.vital_status",
            "date_of_death": "r.date_of_death",
            "recorded_at": "r.recorded_at",
            "recorded_by": "u.username",
        }
    )
    return Projection(
        joins=(
            _participant_joins(f"{_table(ScheduledVisit)} v", "v")
            + f" JOIN {_table(VisitDefinition)} vd ON vd.id = v.definition_id"
            f" LEFT JOIN {_table(VisitRecord)} r ON r.scheduled_visit_id = v.id"
            f" LEFT JOIN {user} u ON u.id = r.recorded_by_id"
        ),
        values=values,
        order_by="s.code, p.sequence, v.study_day",
    )


def _participants() -> Projection:
    registered = "(p.registered_at AT TIME ZONE s.time_zone)::date"
    years = f"date_part('year', age({registered}, p.date_of_birth))::integer"
    return Projection(
        joins=f"{_table(Participant)} p JOIN {_table(Site)} s ON s.id = p.site_id",
        values={
            **_participant_values(),
            "sex": "p.sex",
            # deidentify.age_shown: whole years at the site's date of registration, 90+.
            "age_years": f"CASE WHEN {years} > 89 THEN '90+' ELSE {years}::text END",
            "registered_at": "p.registered_at",
        },
        order_by="s.code, p.sequence",
    )


PROJECTIONS = {
    "participants": _participants,
    "allocations": _allocations,
    "scheduled_doses": _scheduled_doses,
    "visits": _visits,
}


def available(dataset: Dataset, options: ExportOptions) -> bool:
    """Whether this dataset is streamed by PostgreSQL in this export."""
    if connection.vendor != "postgresql" or dataset.name not in PROJECTIONS:
        return False
    values = PROJECTIONS[dataset.name]().values
    return all(column.name in values for column in dataset.columns_for(options))


# --- Cells ----------------------------------------------------------------------------------


def _neutralised(text_sql: str) -> str:
    """safe_csv.neutralise, with '' as NULL (an empty cell, as the ORM path writes it).
    The first character's code point: an integer test, several times cheaper than text."""
    firsts = ", ".join(str(ord(c)) for c in DANGEROUS_FIRST_CHARACTERS)
    return (
        f"(CASE WHEN ascii({text_sql}) IN ({firsts}) THEN '''' || {text_sql} "
        f"ELSE NULLIF({text_sql}, '') END)"
    )


def _labelled(code_sql: str, column: Column, options: ExportOptions) -> str:
    if not options.labels:
        return code_sql
    pairs = column.allowed()
    if not pairs:
        return code_sql
    whens = " ".join(f"WHEN {_literal(code)} THEN {_literal(label)}" for code, label in pairs)
    return f"(CASE {code_sql} {whens} ELSE {code_sql} END)"


def _date(value: str, kind: str, mode: DateMode) -> str:
    """ISO text by casting (DateStyle ISO, set for the COPY): about twice as fast as
    to_char. A time is cut to the second, as `utc_iso` does."""
    if mode == DateMode.STUDY_DAYS:
        local = value if kind == DATE else f"({value} AT TIME ZONE q._zone)::date"
        return f"({local} - q._day_zero)::text"
    if kind == DATE:
        shifted = f"({value} - q._shift)" if mode == DateMode.SHIFTED else value
        return f"({shifted})::text"
    utc = f"({value} AT TIME ZONE 'UTC')"
    if mode == DateMode.SHIFTED:
        utc = f"({utc} - q._shift * interval '1 day')"
    return f"(replace(date_trunc('second', {utc})::text, ' ', 'T') || '+00:00')"


def _cell(column: Column, value: str, options: ExportOptions) -> str:
    kind = column.kind
    if kind in (DATE, DATETIME):
        return _date(value, kind, DateMode(options.date_mode))
    if kind == BOOLEAN:
        code = f"(CASE WHEN {value} THEN 'true' WHEN NOT {value} THEN 'false' END)"
        return _neutralised(_labelled(code, column, options))
    if kind == CODE:
        return _neutralised(_labelled(f"({value})::text", column, options))
    if kind == DECIMAL:
        # Decimal.normalize() then plain digits: trailing zeros dropped, no exponent.
        return f"trim_scale({value})::text"
    if kind == INTEGER:
        # A number as it is, negatives included (safe_csv.numeric_cell); 90+ is no formula.
        return f"({value})::text"
    assert kind == TEXT, kind
    return _neutralised(f"({value})::text")


def select_sql(dataset: Dataset, options: ExportOptions, dates_table: str | None) -> str:
    """The raw values in an inner query, made cells outside it, sorted by integer keys."""
    projection = PROJECTIONS[dataset.name]()
    columns = dataset.columns_for(options)
    raw = [f"{projection.values[c.name]} AS c{i}" for i, c in enumerate(columns)]
    raw.append("s.time_zone AS _zone")
    joins = projection.joins
    # The sites' order by code, as the database itself sorts the codes (the ORM path's
    # order), given as integers: sorting a million rows on an integer instead of a collated
    # text is most of what COPY of these datasets costs.
    ranks = Site.objects.order_by("code").values_list("pk", flat=True)
    site_order = ", ".join(f"({int(pk)}, {rank})" for rank, pk in enumerate(ranks)) or "(0, 0)"
    joins += f" JOIN (VALUES {site_order}) AS so (site_id, rank) ON so.site_id = s.id"
    # Site and number folded into one integer, the first key: PostgreSQL compares the first
    # key in its sort array and reaches into the (wide) row only on a tie, so a first key
    # shared by half the rows (the site) made the sort of the visits three times slower.
    assert projection.order_by.startswith("s.code, p.sequence"), projection.order_by
    keys = [f"(so.rank::bigint * {PARTICIPANTS_PER_SITE_BOUND} + p.sequence)"]
    keys += projection.order_by.split(", ")[2:]
    raw += [f"{key} AS _k{i}" for i, key in enumerate(keys)]
    if dates_table:
        joins += f" JOIN {dates_table} xd ON xd.participant_id = p.id"
        raw += ["xd.shift AS _shift", "xd.day_zero AS _day_zero"]
    where = ""
    if options.site_ids is not None:
        ids = ", ".join(str(int(pk)) for pk in sorted(options.site_ids)) or "NULL"
        where = f" WHERE s.id IN ({ids})"
    cells = ", ".join(_cell(c, f"q.c{i}", options) for i, c in enumerate(columns))
    order_by = ", ".join(f"q._k{i}" for i in range(len(keys)))
    # Built from the projections' own SQL, integer ids and escaped literals: never input.
    # The sort is outside the inner query so that PostgreSQL may make the cells in its
    # parallel workers, before their sorted streams are merged.
    inner = f"SELECT {', '.join(raw)} FROM {joins}{where}"  # noqa: S608
    return f"SELECT {cells} FROM ({inner}) AS q ORDER BY {order_by}"  # noqa: S608


# --- Dates: the export's own shifts and day zeros, for the database to read -------------------

REFERENCE = date(2000, 1, 1)


def _dates_table(context: ExportContext) -> str | None:
    """A temporary table of each participant's shift (days) and day 0, written once per
    export from its `Dates`; None when dates are as recorded."""
    mode = DateMode(context.options.date_mode)
    if mode == DateMode.AS_RECORDED:
        return None
    name = getattr(context, "_copy_dates_table", None)
    if name:
        return name
    name = f"export_dates_{id(context)}"
    lines = io.StringIO()
    ids = Participant.objects.values_list("pk", flat=True).order_by("pk")
    for pid in ids.iterator(chunk_size=10_000):
        if mode == DateMode.SHIFTED:
            shifted = date.fromisoformat(context.dates.date(REFERENCE, pid))
            lines.write(f"{pid}\t{(REFERENCE - shifted).days}\t\\N\n")
        else:
            zero = context.day_zero(pid)
            lines.write(f"{pid}\t0\t{zero.isoformat() if zero else chr(92) + 'N'}\n")
    lines.seek(0)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {name}")
        cursor.execute(
            f"CREATE TEMPORARY TABLE {name} "
            "(participant_id bigint PRIMARY KEY, shift integer NOT NULL, day_zero date)"
        )
        cursor.cursor.copy_expert(f"COPY {name} FROM STDIN", lines)
        cursor.execute(f"ANALYZE {name}")
    context._copy_dates_table = name
    return name


# --- Streaming ------------------------------------------------------------------------------


class CrlfRecords(io.RawIOBase):
    """A write-only stream: PostgreSQL's CSV (records ended by LF) passed on with CRLF record
    ends, as Python's csv writes them; a line break inside a quoted cell is left as it is.
    Counts the records. psycopg2 writes one row per call: `buffered` gathers them in C, so
    that this sees a large chunk at a time."""

    def __init__(self, stream: BinaryIO):
        super().__init__()
        self._stream = stream
        self._quoted = False
        self.records = 0

    @classmethod
    def buffered(cls, stream: BinaryIO) -> tuple[io.BufferedWriter, CrlfRecords]:
        records = cls(stream)
        return io.BufferedWriter(records, buffer_size=FLUSH_BYTES), records

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        chunk = bytes(data)
        if not self._quoted and b'"' not in chunk:
            self.records += chunk.count(b"\n")
            self._stream.write(chunk.replace(b"\n", b"\r\n"))
            return len(chunk)
        # Between quotes (an escaped "" closes and reopens), LF is data; outside, a record end.
        parts = chunk.split(b'"')
        for index, part in enumerate(parts):
            if index:
                self._quoted = not self._quoted
            if not self._quoted:
                self.records += part.count(b"\n")
                parts[index] = part.replace(b"\n", b"\r\n")
        self._stream.write(b'"'.join(parts))
        return len(chunk)


def copy_dataset(dataset: Dataset, context: ExportContext, stream: BinaryIO, *, bom: bool) -> int:
    """The dataset's CSV (header, then the rows from COPY) into `stream`; its rows."""
    header = CsvFile(stream, bom=bom)
    header.header([c.name for c in dataset.columns_for(context.options)])
    header.close()
    sql = select_sql(dataset, context.options, _dates_table(context))
    buffered, records = CrlfRecords.buffered(stream)
    with connection.cursor() as cursor:
        # Dates and times are cast to text: ISO is what the cells must be. The sort of a
        # large dataset fits in memory (the server's, for this one query) instead of disk.
        cursor.execute("SET DateStyle TO 'ISO, YMD'")
        cursor.execute(f"SET work_mem TO '{SORT_MEMORY}'")
        try:
            cursor.cursor.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", buffered)
        finally:
            cursor.execute("RESET work_mem")
    buffered.flush()
    return records.records
