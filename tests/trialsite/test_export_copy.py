"""PostgreSQL's COPY writes the projected datasets byte for byte as the ORM path does: the
same columns, cells, de-identification and formula-safety, for each date mode and option."""

import io

import pytest
from django.utils import translation

from outcomes.models import ScheduledVisit
from tests.trialsite.export_helpers import csv_rows, seed_trial
from trialsite.core.audit import audited_save
from trialsite.exports import copy_sql
from trialsite.exports.bundle import _csv_writer
from trialsite.exports.columns import ExportContext, ExportOptions, header, rows
from trialsite.exports.copy_sql import CrlfRecords
from trialsite.exports.datasets import DATASETS

PROJECTED = tuple(copy_sql.PROJECTIONS)
AWKWARD_REASONS = [
    '=HYPERLINK("http://evil.example","x")',
    "-2 days, said the ward",
    'two lines\nwith "quotes", and a comma',
    "\tindented",
    "",  # left as it is: an empty reason
]


def test_crlf_record_ends_outside_quotes_only_across_chunks():
    out = io.BytesIO()
    records = CrlfRecords(out)
    for piece in (b'a,"x\n', b'y""z"\n', b"b,c\n", b'"\n"\n'):
        records.write(piece)
        records.flush()  # each piece its own chunk: the quote state carries over
    assert out.getvalue() == b'a,"x\ny""z"\r\nb,c\r\n"\n"\r\n'
    assert records.records == 3


@pytest.fixture
def seeded(protocol, site_a, site_b, cast):
    seeded = seed_trial(site=site_a, cast=cast)
    visits = ScheduledVisit.objects.filter(participant=seeded.participant).order_by("study_day")
    # Visits 0 and 2 are recorded by seed_trial; the others are stopped, each for a reason.
    open_visits = [visit for index, visit in enumerate(visits) if index not in (0, 2)]
    assert len(open_visits) >= len(AWKWARD_REASONS) - 1
    for visit, reason in zip(open_visits, AWKWARD_REASONS[:-1], strict=False):
        visit.status, visit.stopped_reason = "not_required", reason
        audited_save(visit, reason="test: reasons a spreadsheet could misread")
    return seeded


def orm_bytes(dataset, context) -> bytes:
    stream = io.BytesIO()
    write = _csv_writer(header(dataset, context.options), rows(dataset, context),
                        bom=context.options.bom)  # fmt: skip
    write(stream)
    return stream.getvalue()


def copy_bytes(dataset, context) -> tuple[bytes, int]:
    stream = io.BytesIO()
    count = copy_sql.copy_dataset(dataset, context, stream, bom=context.options.bom)
    return stream.getvalue(), count


@pytest.mark.postgres
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"free_text": True},
        {"date_mode": "shifted", "free_text": True},
        {"date_mode": "study_days", "labels": True, "bom": True},
    ],
    ids=["default", "free-text", "shifted", "study-days-labels-bom"],
)
def test_copy_writes_what_the_orm_writes(postgres, seeded, site_b, options):
    context = ExportContext(ExportOptions(datasets=PROJECTED, **options))
    with translation.override("en"):
        for name in PROJECTED:
            dataset = DATASETS[name]
            assert copy_sql.available(dataset, context.options), name
            expected = orm_bytes(dataset, context)
            written, count = copy_bytes(dataset, context)
            assert written == expected, name
            assert count == len(csv_rows(expected)) > 0, name


@pytest.mark.postgres
def test_copy_is_scoped_to_the_sites_chosen(postgres, seeded, site_a, site_b):
    for site in (site_a, site_b):
        context = ExportContext(ExportOptions(datasets=PROJECTED, site_ids=frozenset({site.pk})))
        for name in PROJECTED:
            dataset = DATASETS[name]
            assert copy_bytes(dataset, context)[0] == orm_bytes(dataset, context), name


@pytest.mark.postgres
def test_the_reasons_are_neutralised_and_quoted_as_the_orm_path_does(postgres, seeded):
    context = ExportContext(ExportOptions(datasets=("visits",), free_text=True))
    written, _count = copy_bytes(DATASETS["visits"], context)
    assert b"'=HYPERLINK(" in written and b"'-2 days" in written and b"'\tindented" in written
    assert b'"two lines\nwith ""quotes"", and a comma"' in written
    assert b',"",' not in written  # an empty reason is an empty cell, never ""


@pytest.mark.postgres
def test_an_identified_export_of_participants_takes_the_orm_path(postgres, seeded):
    identified = ExportOptions(datasets=("participants",), identified=True, reason="SAE")
    assert not copy_sql.available(DATASETS["participants"], identified)
    assert copy_sql.available(DATASETS["participants"], ExportOptions(datasets=PROJECTED))


@pytest.mark.django_db
def test_every_projection_covers_every_column_of_its_dataset():
    options = ExportOptions(datasets=PROJECTED, free_text=True)
    for name, projection in copy_sql.PROJECTIONS.items():
        values = projection().values
        assert [c.name for c in DATASETS[name].columns_for(options)] == [
            c for c in values if c in {col.name for col in DATASETS[name].columns}
        ], name
        assert set(values) <= {c.name for c in DATASETS[name].columns}, name


def test_sqlite_keeps_the_orm_iterator(settings):
    from django.db import connection

    if connection.vendor == "postgresql":
        pytest.skip("this checks the other database")
    assert not copy_sql.available(DATASETS["scheduled_doses"], ExportOptions(datasets=PROJECTED))
