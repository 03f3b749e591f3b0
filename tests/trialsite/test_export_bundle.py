"""The export bundle: datasets against their dictionary, de-identification, the manifest, the
command, and the cost of an export as the trial grows."""

import csv
import datetime
import hashlib
import io
import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from arms.models import RandomizationList
from outcomes.selectors import participant_endpoints
from tests.factories import bulk_allocated
from tests.trialsite.export_helpers import (
    FORMULA_TERM,
    OLDEST_BORN,
    csv_rows,
    identifiers,
    seed_trial,
)
from trialsite.exports.bundle import DICTIONARY_FILE, MANIFEST_FILE, bundle_write
from trialsite.exports.columns import ExportOptions
from trialsite.exports.datasets import DATASETS
from trialsite.models import DataExport

pytestmark = pytest.mark.django_db

ALL = tuple(DATASETS)


@pytest.fixture
def seeded(protocol, site_a, site_b, cast):
    return seed_trial(site=site_a, cast=cast)


def write(tmp_path, **options):
    manifest = bundle_write(
        directory=tmp_path, options=ExportOptions(datasets=ALL, **options), source="command"
    )
    files = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    return manifest, files


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"identified": True, "reason": "re-contact", "free_text": True},
        {"date_mode": "study_days", "labels": True, "bom": True},
    ],
    ids=["default", "identified-free-text", "study-days-labels-bom"],
)
def test_each_datasets_header_is_its_dictionary(seeded, administrator, tmp_path, options):
    bundle_write(
        directory=tmp_path,
        options=ExportOptions(datasets=ALL, **options),
        user=administrator,
        source="command",
    )
    dictionary = csv_rows((tmp_path / DICTIONARY_FILE).read_bytes())
    assert list(dictionary[0]) == ["dataset", "column", "type", "unit", "allowed_values",
                                   "description"]  # fmt: skip
    for name in ALL:
        text = (tmp_path / f"{name}.csv").read_bytes().decode("utf-8-sig")
        header = next(csv.reader(io.StringIO(text)))
        assert header == [row["column"] for row in dictionary if row["dataset"] == name], name
        assert all(row["description"] for row in dictionary)


def test_column_names_are_stable_snake_case():
    for dataset in DATASETS.values():
        names = [c.name for c in dataset.columns]
        assert len(names) == len(set(names)), dataset.name
        assert all(n == n.lower() and " " not in n for n in names), dataset.name


def test_the_de_identified_bundle_holds_no_identifier(seeded, tmp_path):
    manifest, files = write(tmp_path)
    assert manifest["identified"] is False
    everything = b"".join(files.values())
    for identifier in identifiers():
        assert identifier.encode() not in everything, identifier
    participants = {r["study_number"]: r for r in csv_rows(files["participants.csv"])}
    assert participants[seeded.oldest.study_number]["age_years"] == "90+"
    assert "name" not in participants[seeded.oldest.study_number]
    assert OLDEST_BORN.isoformat().encode() not in everything


def test_the_identified_bundle_holds_them(seeded, administrator, tmp_path):
    bundle_write(
        directory=tmp_path,
        options=ExportOptions(datasets=ALL, identified=True, reason="re-contact"),
        user=administrator,
        source="command",
    )
    participants = {
        r["study_number"]: r for r in csv_rows((tmp_path / "participants.csv").read_bytes())
    }
    row = participants[seeded.oldest.study_number]
    assert (row["name"], row["mrn"], row["date_of_birth"]) == (
        "Zhang Meihua",
        "SHE-MRN-90817",
        OLDEST_BORN.isoformat(),
    )
    # The contact begins with "+": a spreadsheet would read it as a formula.
    assert row["contact"] == "'+86 138 0013 8000"


def test_manifest_hashes_and_counts_match_the_files(seeded, tmp_path):
    manifest, files = write(tmp_path)
    assert json.loads(files[MANIFEST_FILE]) == manifest
    assert {f["name"] for f in manifest["files"]} == {f"{n}.csv" for n in ALL} | {DICTIONARY_FILE}
    for entry in manifest["files"]:
        data = files[entry["name"]]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(csv_rows(data)) == entry["rows"]
        assert len(data) == entry["bytes"]
    assert manifest["protocol_version"]
    assert manifest["exported_at"].endswith("+00:00")
    record = DataExport.objects.get()
    assert record.file_hashes == {f["name"]: f["sha256"] for f in manifest["files"]}
    assert record.row_counts["participants.csv"] == 2
    assert record.history.count() == 1  # in the audit trail


def test_unanswered_is_empty_and_not_done_is_its_own_value(seeded, tmp_path):
    _manifest, files = write(tmp_path)
    visits = csv_rows(files["visits.csv"])
    day0 = visits[0]
    assert (day0["who_score"], day0["who_score_status"]) == ("5", "done")
    assert (day0["spo2"], day0["spo2_status"]) == ("", "not_done")
    assert (day0["pao2"], day0["pao2_status"]) == ("", "")
    assert "spo2_not_done_reason" not in day0  # free text is off by default
    not_recorded = visits[1]
    assert not_recorded["visit_date"] == "" and not_recorded["who_score_status"] == ""
    # A negative number in a numeric column survives as a number.
    assert visits[2]["days_outside_window"] == "-1"
    consent = csv_rows(files["consents.csv"])[-1]
    assert consent["witness_needed"] == "true"
    events = csv_rows(files["adverse_events.csv"])
    assert events[0]["end_date"] == "" and events[0]["causality_expected"] == ""
    assert events[0]["term"] == "'" + FORMULA_TERM


def test_times_are_utc_with_offset_and_the_site_zone_beside_them(seeded, tmp_path):
    _manifest, files = write(tmp_path)
    allocation = csv_rows(files["allocations.csv"])[0]
    assert allocation["randomized_at"] == "2026-03-10T02:00:00+00:00"
    assert allocation["site_time_zone"] == "Asia/Shanghai"


def test_study_days_count_from_the_sites_date_of_randomization(seeded, tmp_path):
    _manifest, files = write(tmp_path, date_mode="study_days")
    allocation = csv_rows(files["allocations.csv"])[0]
    assert allocation["randomized_at"] == "0"
    visits = csv_rows(files["visits.csv"])
    assert [v["due_on"] for v in visits] == [v["study_day"] for v in visits]
    assert b"2026-03" not in files["visits.csv"]


def test_shifted_dates_keep_each_participants_intervals(seeded, tmp_path):
    _manifest, files = write(tmp_path, date_mode="shifted")
    visits = csv_rows(files["visits.csv"])
    days = [datetime.date.fromisoformat(v["due_on"]) for v in visits]
    # Day 0 is 2026-03-10 as recorded; every date moved back by the same 1 or more days.
    real = [
        datetime.date(2026, 3, 10) + datetime.timedelta(days=int(v["study_day"])) for v in visits
    ]
    assert all(shown < recorded for shown, recorded in zip(days, real, strict=True))
    assert [(d - days[0]).days for d in days] == [int(v["study_day"]) for v in visits]


def test_labels_instead_of_codes(seeded, tmp_path):
    _manifest, files = write(tmp_path, labels=True)
    participant = csv_rows(files["participants.csv"])[0]
    assert participant["sex"] == "Female"
    assert csv_rows(files["visits.csv"])[0]["spo2_status"] == "Not done"


def test_the_bom_is_written_only_when_asked(seeded, tmp_path):
    _manifest, files = write(tmp_path)
    assert not files["participants.csv"].startswith(b"\xef\xbb\xbf")
    with_bom = tmp_path.parent / f"{tmp_path.name}-bom"
    with_bom.mkdir()
    bundle_write(
        directory=with_bom, options=ExportOptions(datasets=ALL, bom=True), source="command"
    )
    assert (with_bom / "participants.csv").read_bytes().startswith(b"\xef\xbb\xbf")


def test_the_command_writes_the_files_and_the_manifest(seeded, tmp_path):
    out = tmp_path / "export"
    call_command("export_csv", "--out", str(out), stdout=io.StringIO())
    names = {path.name for path in out.iterdir()}
    assert names == {f"{n}.csv" for n in ALL} | {DICTIONARY_FILE, MANIFEST_FILE}
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["source"] == "command" and manifest["identified"] is False
    assert DataExport.objects.get().source == "command"


def test_the_command_refuses_an_unknown_dataset(seeded, tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Unknown datasets: visitz"):
        call_command("export_csv", "--out", str(tmp_path), "--datasets", "visitz")
    assert not DataExport.objects.exists()


def export_queries(tmp_path, name) -> int:
    directory = tmp_path / name
    directory.mkdir()
    with CaptureQueriesContext(connection) as queries:
        bundle_write(directory=directory, options=ExportOptions(datasets=ALL), source="command")
    return len(queries)


def test_the_export_costs_the_same_queries_for_3_or_19_participants(seeded, site_a, cast, tmp_path):
    randomization_list = RandomizationList.objects.get(status="active")
    bulk_allocated(
        site=site_a, user=cast["coordinator_a"], randomization_list=randomization_list, count=1
    )
    few = export_queries(tmp_path, "few")
    bulk_allocated(
        site=site_a, user=cast["coordinator_a"], randomization_list=randomization_list, count=16
    )
    many = export_queries(tmp_path, "many")
    assert many == few


def test_a_trial_without_participants_exports_headers_only(protocol, tmp_path):
    manifest, files = write(tmp_path)
    counts = {f["name"]: f["rows"] for f in manifest["files"]}
    assert counts["participants.csv"] == 0
    assert files["participants.csv"].startswith(b"study_number,site_code")


def test_endpoints_are_those_of_the_participant_page(seeded, tmp_path):
    _manifest, files = write(tmp_path)
    (row,) = csv_rows(files["endpoints.csv"])
    shown = participant_endpoints(seeded.participant)
    assert row["study_number"] == seeded.participant.study_number
    assert row["worst_who_score"] == str(shown.worst_who_score) == "5"
    assert row["died_by_day_28"] == {True: "true", False: "false", None: ""}[shown.died_by_day_28]
    assert row["ventilation_free_days"] == str(shown.ventilation_free_days)
    assert row["time_to_improvement_days"] == str(shown.improvement.day)
    assert row["improvement_observed"] == str(shown.improvement.event).lower()
    assert row["follow_up_ongoing"] == "true"


def test_the_command_exports_the_sites_named(seeded, site_b, cast, tmp_path):
    from tests.factories import ParticipantFactory

    other = ParticipantFactory(site=site_b, user=cast["coordinator_b"])
    call_command("export_csv", "--out", str(tmp_path), "--sites", "WUH", stdout=io.StringIO())
    participants = csv_rows((tmp_path / "participants.csv").read_bytes())
    assert [r["study_number"] for r in participants] == [other.study_number]
    assert json.loads((tmp_path / MANIFEST_FILE).read_text())["filters"]["sites"] == ["WUH"]


def test_the_dictionary_gives_units_and_each_codes_label(seeded, tmp_path):
    _manifest, files = write(tmp_path)
    dictionary = {(r["dataset"], r["column"]): r for r in csv_rows(files[DICTIONARY_FILE])}
    support = dictionary["visits", "respiratory_support"]
    assert support["type"] == "code"
    assert "invasive=Invasive mechanical ventilation" in support["allowed_values"]
    assert dictionary["visits", "spo2"]["unit"] == "%"
    assert dictionary["visits", "spo2_status"]["allowed_values"] == "done=Done | not_done=Not done"
    assert dictionary["allocations", "arm_code"]["allowed_values"].startswith("STD=")
    assert dictionary["participants", "registered_at"]["type"].startswith("datetime")
    assert ("participants", "name") not in dictionary


def test_the_randomization_lists_audit_trail_is_the_administrators_only(seeded, tmp_path):
    manifest, files = write(tmp_path)
    models = {r["model"] for r in csv_rows(files["audit_trail.csv"])}
    assert "arms.allocation" in models and "arms.randomizationlist" not in models
    (tmp_path / "admin").mkdir()
    bundle_write(
        directory=tmp_path / "admin",
        options=ExportOptions(datasets=("audit_trail",), include_concealed=True),
        source="command",
    )
    rows = csv_rows((tmp_path / "admin" / "audit_trail.csv").read_bytes())
    assert "arms.randomizationlist" in {r["model"] for r in rows}


def test_eligibility_answers_a_row_per_criterion_with_yes_no_answers(seeded, tmp_path):
    _manifest, files = write(tmp_path)
    screening = seeded.oldest.screenings.get()
    rows = [
        r for r in csv_rows(files["eligibility_answers.csv"])
        if r["screening_id"] == str(screening.pk)
    ]  # fmt: skip
    by_code = {r["criterion_code"]: r for r in rows}
    assert len(rows) == len(screening.results) == len(by_code)
    assert by_code["I1"]["outcome"] == "failed" and by_code["I1"]["answer"] == ""
    assert by_code["E1"]["answer"] == "false" and by_code["E1"]["outcome"] == "met"
    log = {r["screening_id"]: r for r in csv_rows(files["screening_log.csv"])}
    assert log[str(screening.pk)]["decision"] == "ineligible"
    assert log[str(screening.pk)]["failed_criteria"] == "I1"
    assert log[str(screening.pk)]["nyha_class"] == str(screening.answers["nyha_class"])


def test_audit_rows_name_the_participant_even_through_a_visit(seeded, tmp_path):
    _manifest, files = write(tmp_path, date_mode="study_days")
    rows = csv_rows(files["audit_trail.csv"])
    visit_records = [r for r in rows if r["model"] == "outcomes.visitrecord"]
    assert len(visit_records) == 2
    assert {r["study_number"] for r in visit_records} == {seeded.participant.study_number}
    assert all(r["changed_at"].isdigit() for r in visit_records)  # study days
    sites = [r for r in rows if r["model"] == "trialsite.site"]
    assert sites and all(r["study_number"] == "" and r["changed_at"] == "" for r in sites)
    assert b"2026-" not in files["audit_trail.csv"]


def test_visit_reminders_name_their_visit(seeded, tmp_path):
    _manifest, files = write(tmp_path)
    visits = {r["visit_id"]: r for r in csv_rows(files["visits.csv"])}
    reminders = csv_rows(files["visit_reminders.csv"])
    assert reminders
    for reminder in reminders:
        assert visits[reminder["visit_id"]]["visit_code"] == reminder["visit_code"]
    # Recorded visits have their reminder cancelled.
    day0 = next(iter(visits.values()))
    assert {r["status"] for r in reminders if r["visit_id"] == day0["visit_id"]} <= {"cancelled"}
