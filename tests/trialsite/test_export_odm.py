"""The CDISC ODM 1.3.2 file: valid against the schema odmlib ships, every item a column of the
data dictionary, the seeded values in the right place, no identifier in a de-identified file,
audit records with user, UTC time and reason, and the CSV export's scoping."""

import datetime
import hashlib
import io
import json
from decimal import Decimal
from importlib.resources import files

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from lxml import etree

from arms.models import RandomizationList
from dosing.models import ScheduledDose
from dosing.services import dose_record
from outcomes.models import VisitRecord
from outcomes.services import visit_record_correct
from tests.factories import ParticipantFactory, bulk_allocated
from tests.outcomes.visit_helpers import site_time
from tests.trialsite.export_helpers import csv_rows, identifiers, read_zip, seed_trial
from trialsite.exports import odm
from trialsite.exports.bundle import DICTIONARY_FILE, MANIFEST_FILE, bundle_build, bundle_write
from trialsite.exports.columns import ExportContext, ExportOptions
from trialsite.exports.datasets import DATASETS
from trialsite.exports.odm import ODM_FILE, ODM_NAMESPACE, item_oid, odm_write
from trialsite.models import DataExport

pytestmark = pytest.mark.django_db

ALL = tuple(DATASETS)
NS = {"odm": ODM_NAMESPACE}
CORRECTION_REASON = "Transcription error: the source says 6"
EXPORTED_AT = datetime.datetime(2026, 4, 1, 8, 0, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def schema():
    path = files("odmlib") / "schemas" / "odm" / "1.3.2" / "ODM1-3-2.xsd"
    return etree.XMLSchema(etree.parse(str(path)))


@pytest.fixture
def seeded(protocol, site_a, site_b, cast):
    """The export helpers' trial, with the first dose given and the day-0 visit corrected."""
    seeded = seed_trial(site=site_a, cast=cast)
    coordinator = cast["coordinator_a"]
    dose = ScheduledDose.objects.filter(participant=seeded.participant).order_by("due_at").first()
    if dose is not None:  # the seeded participant's arm has doses (MSC or PAX)
        with time_machine.travel(dose.due_at + datetime.timedelta(hours=1), tick=False):
            dose_record(
                dose=dose,
                user=coordinator,
                outcome="given",
                given_at=dose.due_at,
                amount=dose.planned_amount,
                route=dose.schedule.route,
                lot_number="LOT-2026-07",
                given_by=coordinator,
            )
    record = VisitRecord.objects.get(
        scheduled_visit__participant=seeded.participant, scheduled_visit__study_day=0
    )
    with time_machine.travel(site_time(site_a, 2026, 3, 23, 9, 0), tick=False):
        visit_record_correct(
            record=record,
            user=coordinator,
            reason=CORRECTION_REASON,
            visit_date=record.visit_date,
            vital_status="alive",
            measurements={
                "who_score": 6,
                "spo2_not_done": True,
                "spo2_not_done_reason": "oximeter broken",
                "respiratory_support": "oxygen",
            },
        )
    seeded.dose = dose
    return seeded


def write_odm(**options) -> bytes:
    out = io.BytesIO()
    context = ExportContext(ExportOptions(datasets=ALL, **options))
    odm_write(out, context=context, exported_at=EXPORTED_AT)
    return out.getvalue()


def parse(data: bytes):
    return etree.fromstring(data)


def subject(root, study_number):
    (found,) = root.xpath(f"//odm:SubjectData[@SubjectKey='{study_number}']", namespaces=NS)
    return found


def items_of(group) -> dict[str, str]:
    return {
        item.get("ItemOID"): item.get("Value")
        for item in group.xpath("odm:ItemData", namespaces=NS)
    }


def form_groups(subject_data, event_oid, form_oid):
    return subject_data.xpath(
        f"odm:StudyEventData[@StudyEventOID='{event_oid}']"
        f"/odm:FormData[@FormOID='{form_oid}']/odm:ItemGroupData",
        namespaces=NS,
    )


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"identified": True, "reason": "re-contact", "free_text": True},
        {"date_mode": "study_days"},
        {"date_mode": "shifted", "labels": True},
    ],
    ids=["default", "identified-free-text", "study-days", "shifted"],
)
def test_the_file_is_valid_odm_1_3_2(seeded, schema, options):
    root = parse(write_odm(**options))
    assert schema.validate(root.getroottree()), schema.error_log
    assert root.get("ODMVersion") == "1.3.2" and root.get("FileType") == "Snapshot"
    assert len(root.xpath("//odm:SubjectData", namespaces=NS)) == 2


@pytest.mark.parametrize(
    "options",
    [{}, {"identified": True, "reason": "re-contact", "free_text": True}],
    ids=["default", "identified-free-text"],
)
def test_every_item_is_a_column_of_the_dictionary(seeded, administrator, tmp_path, options):
    bundle_write(
        directory=tmp_path,
        options=ExportOptions(datasets=ALL, **options),
        user=administrator,
        source="command",
    )
    dictionary = {
        (r["dataset"], r["column"]): r for r in csv_rows((tmp_path / DICTIONARY_FILE).read_bytes())
    }
    root = parse(write_odm(**options))
    item_defs = root.xpath("//odm:ItemDef", namespaces=NS)
    assert item_defs
    for item_def in item_defs:
        (alias,) = item_def.xpath("odm:Alias[@Context='trialsite:dictionary']", namespaces=NS)
        dataset, column = alias.get("Name").split(".")
        assert (dataset, column) in dictionary, alias.get("Name")
        assert item_def.get("OID") == item_oid(dataset, column)
        assert item_def.get("Name") == column
    by_name = {d.get("OID"): d for d in item_defs}
    assert by_name["IT.VISITS.WHO_SCORE"].get("DataType") == "integer"
    assert by_name["IT.VISITS.PAO2"].get("DataType") == "float"
    assert by_name["IT.PARTICIPANTS.REGISTERED_AT"].get("DataType") == "datetime"
    assert by_name["IT.VISITS.DUE_ON"].get("DataType") == "date"
    assert by_name["IT.ADVERSE_EVENTS.SERIOUS"].get("DataType") == "boolean"
    assert ("IT.PARTICIPANTS.NAME" in by_name) is bool(options)
    (support,) = root.xpath("//odm:CodeList[@OID='CL.VISITS.RESPIRATORY_SUPPORT']", namespaces=NS)
    decodes = {
        item.get("CodedValue"): item.findtext("odm:Decode/odm:TranslatedText", namespaces=NS)
        for item in support.xpath("odm:CodeListItem", namespaces=NS)
    }
    assert decodes["invasive"] == "Invasive mechanical ventilation"
    (spo2_unit,) = by_name["IT.VISITS.SPO2"].xpath("odm:MeasurementUnitRef", namespaces=NS)
    (unit,) = root.xpath(
        f"//odm:MeasurementUnit[@OID='{spo2_unit.get('MeasurementUnitOID')}']", namespaces=NS
    )
    assert unit.get("Name") == "%"


def test_the_protocols_steps_are_its_study_events(seeded):
    root = parse(write_odm())
    events = [e.get("StudyEventOID") for e in root.xpath("//odm:StudyEventRef", namespaces=NS)]
    visits = [f"SE.VISIT.{code}" for code in ("D0", "D1", "D4", "D7", "D14", "D28")]
    assert events[:3] == ["SE.SCREENING", "SE.CONSENT", "SE.RANDOMIZATION"]
    assert events[-2:] == ["SE.AE", "SE.END"]
    # Each dose day of the protocol's schedules (PAX: days 1-5, MSC: days 1 and 4).
    assert events[3:-2] == [f"SE.DOSE.D{day}" for day in range(1, 6)] + visits
    definitions = {d.get("OID"): d for d in root.xpath("//odm:StudyEventDef", namespaces=NS)}
    assert set(definitions) == set(events)
    forms = [
        f.get("FormOID") for f in definitions["SE.DOSE.D4"].xpath("odm:FormRef", namespaces=NS)
    ]
    assert forms == ["F.SCHEDULED_DOSES", "F.ADMINISTRATIONS"]


def test_a_participants_values_are_in_the_right_items(seeded, tmp_path):
    participant = seeded.participant
    root = parse(write_odm())
    subject_data = subject(root, participant.study_number)
    (site_ref,) = subject_data.xpath("odm:SiteRef", namespaces=NS)
    assert site_ref.get("LocationOID") == "LOC.SHE"

    (day0,) = form_groups(subject_data, "SE.VISIT.D0", "F.VISITS")
    values = items_of(day0)
    assert values["IT.VISITS.WHO_SCORE"] == "6"  # as corrected
    assert values["IT.VISITS.SPO2_STATUS"] == "not_done"
    assert "IT.VISITS.SPO2" not in values  # not done: no value
    assert "IT.VISITS.PAO2" not in values and "IT.VISITS.PAO2_STATUS" not in values  # unanswered

    # Every visit's ItemData hold exactly the cells of its visits.csv row.
    bundle_write(directory=tmp_path, options=ExportOptions(datasets=ALL), source="command")
    for row in csv_rows((tmp_path / "visits.csv").read_bytes()):
        if row["study_number"] != participant.study_number:
            continue
        (group,) = form_groups(subject_data, f"SE.VISIT.{row['visit_code']}", "F.VISITS")
        expected = {
            item_oid("visits", column): cell
            for column, cell in row.items()
            if cell and column not in ("study_number", "site_code", "site_time_zone")
        }
        assert items_of(group) == expected, row["visit_code"]

    allocation = items_of(form_groups(subject_data, "SE.RANDOMIZATION", "F.ALLOCATIONS")[0])
    assert allocation["IT.ALLOCATIONS.ARM_CODE"] == participant.allocation.arm.code
    assert allocation["IT.ALLOCATIONS.RANDOMIZED_AT"] == "2026-03-10T02:00:00+00:00"

    dose = seeded.dose
    if dose is not None:
        event = f"SE.DOSE.D{dose.study_day}"
        planned = {
            items_of(g)["IT.SCHEDULED_DOSES.DOSE_ID"]: items_of(g)
            for g in form_groups(subject_data, event, "F.SCHEDULED_DOSES")
        }[str(dose.pk)]
        assert Decimal(planned["IT.SCHEDULED_DOSES.PLANNED_AMOUNT"]) == dose.planned_amount
        (given,) = form_groups(subject_data, event, "F.ADMINISTRATIONS")
        given = items_of(given)
        assert given["IT.ADMINISTRATIONS.DOSE_ID"] == str(dose.pk)
        assert given["IT.ADMINISTRATIONS.OUTCOME"] == "given"
        assert given["IT.ADMINISTRATIONS.LOT_NUMBER"] == "LOT-2026-07"
        assert Decimal(given["IT.ADMINISTRATIONS.AMOUNT"]) == dose.planned_amount


def test_an_adverse_events_formula_term_is_plain_text_in_xml(seeded):
    root = parse(write_odm())
    (event,) = form_groups(
        subject(root, seeded.participant.study_number), "SE.AE", "F.ADVERSE_EVENTS"
    )
    assert items_of(event)["IT.ADVERSE_EVENTS.TERM"].startswith("=HYPERLINK(")


@pytest.mark.parametrize("date_mode", ["as_recorded", "shifted"])
def test_a_de_identified_file_holds_no_identifier(seeded, date_mode):
    data = write_odm(date_mode=date_mode)
    for identifier in identifiers():
        assert identifier.encode() not in data, identifier
    root = parse(data)
    assert not root.xpath("//odm:ItemDef[@Name='name' or @Name='mrn']", namespaces=NS)
    # Free text is off: the withdrawal's reason (which names the daughter) is not an item.
    assert not root.xpath("//odm:ItemDef[@OID='IT.WITHDRAWALS.REASON']", namespaces=NS)
    assert not root.xpath("//odm:ReasonForChange", namespaces=NS)
    study_numbers = {s.get("SubjectKey") for s in root.xpath("//odm:SubjectData", namespaces=NS)}
    assert study_numbers == {seeded.participant.study_number, seeded.oldest.study_number}


def test_the_identified_file_holds_the_identifiers(seeded):
    root = parse(write_odm(identified=True, reason="re-contact"))
    registration = form_groups(
        subject(root, seeded.oldest.study_number), "SE.SCREENING", "F.PARTICIPANTS"
    )
    values = items_of(registration[0])
    assert values["IT.PARTICIPANTS.NAME"] == "Zhang Meihua"
    assert values["IT.PARTICIPANTS.MRN"] == "SHE-MRN-90817"
    # A spreadsheet's guard is not XML's: the contact is as typed.
    assert values["IT.PARTICIPANTS.CONTACT"] == "+86 138 0013 8000"


def audit_of(element) -> dict:
    (record,) = element.xpath("odm:AuditRecord", namespaces=NS)
    return {
        "user": record.find("odm:UserRef", NS).get("UserOID"),
        "location": record.find("odm:LocationRef", NS).get("LocationOID"),
        "at": record.findtext("odm:DateTimeStamp", namespaces=NS),
        "reason": record.findtext("odm:ReasonForChange", namespaces=NS),
        "source": record.findtext("odm:SourceID", namespaces=NS),
    }


def test_audit_records_say_who_where_when_and_why(seeded, cast):
    coordinator = cast["coordinator_a"].get_username()
    root = parse(write_odm(free_text=True))
    subject_data = subject(root, seeded.participant.study_number)
    (form,) = subject_data.xpath(
        "odm:StudyEventData[@StudyEventOID='SE.VISIT.D0']/odm:FormData", namespaces=NS
    )
    record = VisitRecord.objects.get(scheduled_visit__participant=seeded.participant,
                                     scheduled_visit__study_day=0)  # fmt: skip
    first, correction = record.history.order_by("history_date", "history_id")
    # The form: who entered the visit, where, when (UTC).
    assert audit_of(form) == {
        "user": f"USR.{coordinator}",
        "location": "LOC.SHE",
        "at": first.history_date.astimezone(datetime.UTC).isoformat(),
        "reason": first.history_change_reason,  # "Visit recorded"
        "source": f"outcomes.visitrecord:{first.history_id}",
    }
    (who,) = form.xpath(".//odm:ItemData[@ItemOID='IT.VISITS.WHO_SCORE']", namespaces=NS)
    assert audit_of(who) == {
        "user": f"USR.{coordinator}",
        "location": "LOC.SHE",
        "at": "2026-03-23T01:00:00+00:00",  # 09:00 in Shanghai
        "reason": CORRECTION_REASON,
        "source": f"outcomes.visitrecord:{correction.history_id}",
    }
    # A value the correction did not touch keeps the form's audit record.
    (support,) = form.xpath(
        ".//odm:ItemData[@ItemOID='IT.VISITS.RESPIRATORY_SUPPORT']", namespaces=NS
    )
    assert not support.xpath("odm:AuditRecord", namespaces=NS)
    # Every user and location referred to is defined.
    users = {u.get("OID") for u in root.xpath("//odm:AdminData/odm:User", namespaces=NS)}
    locations = {u.get("OID") for u in root.xpath("//odm:AdminData/odm:Location", namespaces=NS)}
    assert {r.get("UserOID") for r in root.xpath("//odm:UserRef", namespaces=NS)} <= users
    assert {r.get("LocationOID") for r in root.xpath("//odm:LocationRef", namespaces=NS)} <= (
        locations
    )
    assert all(
        stamp.text.endswith("+00:00") for stamp in root.xpath("//odm:DateTimeStamp", namespaces=NS)
    )


def test_the_reason_for_a_change_is_free_text_and_off_by_default(seeded):
    root = parse(write_odm())
    (who,) = subject(root, seeded.participant.study_number).xpath(
        "odm:StudyEventData[@StudyEventOID='SE.VISIT.D0']"
        "//odm:ItemData[@ItemOID='IT.VISITS.WHO_SCORE']",
        namespaces=NS,
    )
    audit = audit_of(who)
    assert audit["at"] == "2026-03-23T01:00:00+00:00" and audit["reason"] is None
    assert CORRECTION_REASON.encode() not in write_odm()


def test_study_days_leave_no_date_in_the_file(seeded):
    data = write_odm(date_mode="study_days")
    assert b"2026-03" not in data and b"<AuditRecord>" not in data
    root = parse(data)
    (day0,) = form_groups(subject(root, seeded.participant.study_number), "SE.VISIT.D0", "F.VISITS")
    assert items_of(day0)["IT.VISITS.DUE_ON"] == "0"


def test_participants_written_a_batch_at_a_time_lose_nothing(seeded, monkeypatch):
    whole = write_odm()
    monkeypatch.setattr(odm, "PARTICIPANTS_PER_BATCH", 1)
    assert write_odm() == whole


def test_an_empty_trial_is_a_valid_file_without_subjects(protocol, schema):
    root = parse(write_odm())
    assert schema.validate(root.getroottree()), schema.error_log
    assert not root.xpath("//odm:SubjectData", namespaces=NS)


def odm_queries() -> int:
    with CaptureQueriesContext(connection) as queries:
        write_odm()
    return len(queries)


def test_the_file_costs_the_same_queries_for_3_or_19_participants(seeded, site_a, cast):
    randomization_list = RandomizationList.objects.get(status="active")
    bulk_allocated(
        site=site_a, user=cast["coordinator_a"], randomization_list=randomization_list, count=1
    )
    few = odm_queries()
    bulk_allocated(
        site=site_a, user=cast["coordinator_a"], randomization_list=randomization_list, count=16
    )
    assert odm_queries() == few


def test_shifted_dates_are_those_of_the_csvs_beside_it(seeded, tmp_path):
    manifest = bundle_write(
        directory=tmp_path,
        options=ExportOptions(datasets=ALL, date_mode="shifted", odm=True),
        source="command",
    )
    assert ODM_FILE in {f["name"] for f in manifest["files"]}
    root = parse((tmp_path / ODM_FILE).read_bytes())
    subject_data = subject(root, seeded.participant.study_number)
    for row in csv_rows((tmp_path / "visits.csv").read_bytes()):
        if row["study_number"] == seeded.participant.study_number:
            (group,) = form_groups(subject_data, f"SE.VISIT.{row['visit_code']}", "F.VISITS")
            assert items_of(group)["IT.VISITS.DUE_ON"] == row["due_on"]


@pytest.mark.parametrize("sites", [None, "WUH"])
def test_its_subjects_are_the_csv_exports_participants(seeded, site_b, cast, tmp_path, sites):
    ParticipantFactory(site=site_b, user=cast["coordinator_b"])
    site_ids = None if sites is None else frozenset({site_b.pk})
    bundle_write(
        directory=tmp_path,
        options=ExportOptions(datasets=ALL, site_ids=site_ids, odm=True),
        source="command",
    )
    participants = [
        r["study_number"] for r in csv_rows((tmp_path / "participants.csv").read_bytes())
    ]
    root = parse((tmp_path / ODM_FILE).read_bytes())
    keys = [s.get("SubjectKey") for s in root.xpath("//odm:SubjectData", namespaces=NS)]
    assert keys == participants
    locations = [loc.get("OID") for loc in root.xpath("//odm:Location", namespaces=NS)]
    assert locations == (["LOC.SHE", "LOC.WUH"] if sites is None else ["LOC.WUH"])
    if sites:
        assert seeded.participant.study_number.encode() not in (tmp_path / ODM_FILE).read_bytes()


def test_the_bundle_lists_odm_xml_with_its_hash_and_records_it(seeded, tmp_path):
    manifest = bundle_write(
        directory=tmp_path, options=ExportOptions(datasets=ALL, odm=True), source="command"
    )
    (entry,) = [f for f in manifest["files"] if f["name"] == ODM_FILE]
    data = (tmp_path / ODM_FILE).read_bytes()
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["bytes"] == len(data) and entry["rows"] == 2  # subjects
    assert manifest["filters"]["odm"] is True
    record = DataExport.objects.get()
    assert record.file_hashes[ODM_FILE] == entry["sha256"]
    # Without the option there is no ODM file.
    (tmp_path / "plain").mkdir()
    plain = bundle_write(
        directory=tmp_path / "plain", options=ExportOptions(datasets=ALL), source="command"
    )
    assert ODM_FILE not in {f["name"] for f in plain["files"]}


def test_the_command_writes_odm_xml_when_asked(seeded, schema, tmp_path):
    call_command("export_csv", "--out", str(tmp_path), "--odm", stdout=io.StringIO())
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert ODM_FILE in {f["name"] for f in manifest["files"]}
    assert schema.validate(etree.parse(str(tmp_path / ODM_FILE)))


def test_the_page_puts_odm_xml_in_the_bundle_when_asked(
    seeded, cast, client_for, settings, tmp_path
):
    settings.EXPORT_ROOT = tmp_path / "exports"
    client = client_for(cast["data_manager"])
    page = client.get(reverse("exports:bundle"))
    assert b'name="odm"' in page.content
    response = client.post(
        reverse("exports:bundle"),
        {"datasets": list(DATASETS), "date_mode": "as_recorded", "odm": "on"},
    )
    assert response.status_code == 302, response.content[:500]
    export = DataExport.objects.get()
    assert bundle_build(export_id=export.pk)
    download = client.get(reverse("exports:download", args=[export.pk]))
    files = read_zip(b"".join(download.streaming_content))
    manifest = json.loads(files[MANIFEST_FILE])
    (entry,) = [f for f in manifest["files"] if f["name"] == ODM_FILE]
    assert entry["sha256"] == hashlib.sha256(files[ODM_FILE]).hexdigest()
    export.refresh_from_db()
    assert export.file_hashes[ODM_FILE] == entry["sha256"]
    for identifier in identifiers():
        assert identifier.encode() not in files[ODM_FILE], identifier
