"""The exported electronic signatures: each signed dataset (sign-offs, adverse events with
their causality, end of study) carries the manifestation, the hash of what was signed, its
form and whether the signature still holds, as the pages say."""

import datetime

import pytest
import time_machine

from enrollment.models import EligibilitySignoff
from outcomes.models import EndReason
from outcomes.selectors import participant_interventions
from outcomes.services import (
    adverse_event_record,
    adverse_event_update,
    causality_sign,
    end_of_study_sign,
    participant_study_end,
)
from tests.factories import PASSWORD
from tests.outcomes.ae_helpers import randomized_to, site_time
from tests.trialsite.export_helpers import csv_rows
from trialsite.core.audit import audited_save
from trialsite.core.signatures import CANONICAL_FORM
from trialsite.exports.bundle import DICTIONARY_FILE, bundle_write
from trialsite.exports.columns import ExportOptions

pytestmark = pytest.mark.django_db

SIGNED = ("signoffs", "adverse_events", "end_of_study")
EVENT = {
    "term": "Rash",
    "onset_date": datetime.date(2026, 3, 11),
    "end_date": None,
    "grade": 2,
    "death_date": None,
    "serious": False,
    "criteria": set(),
    "action_taken": "none",
    "outcome": "recovering",
}


def export(tmp_path, name, **options) -> dict[str, list[dict[str, str]]]:
    directory = tmp_path / name
    directory.mkdir()
    bundle_write(
        directory=directory,
        options=ExportOptions(datasets=SIGNED, **options),
        source="command",
    )
    return {path.stem: csv_rows(path.read_bytes()) for path in directory.glob("*.csv")}


@pytest.fixture
def signed_trial(protocol, site_a, coordinator_a, investigator_a, administrator):
    allocation = randomized_to(
        "PAX",
        site=site_a,
        coordinator=coordinator_a,
        investigator=investigator_a,
        administrator=administrator,
        at=site_time(site_a, 2026, 3, 10, 10, 0),
    )
    participant = allocation.participant
    with time_machine.travel(site_time(site_a, 2026, 3, 12, 15, 0), tick=False):
        rash = adverse_event_record(participant=participant, user=coordinator_a, **EVENT)
        causality_sign(
            adverse_event=rash,
            user=investigator_a,
            password=PASSWORD,
            expected=True,
            relatedness={i.key: "possible" for i in participant_interventions(participant)},
        )
        end = participant_study_end(
            participant=participant,
            user=coordinator_a,
            reason=EndReason.LOST,
            ended_on=datetime.date(2026, 3, 12),
        )
        end_of_study_sign(end=end, user=investigator_a, password=PASSWORD)
    return participant, rash


def test_each_signed_dataset_carries_the_hash_and_the_signatures_state(
    signed_trial, investigator_a, coordinator_a, tmp_path
):
    participant, rash = signed_trial
    before = export(tmp_path, "before", free_text=True)
    [signoff] = [r for r in before["signoffs"] if r["study_number"] == participant.study_number]
    stored = EligibilitySignoff.objects.get(screening__participant=participant)
    assert (signoff["signature_status"], signoff["signature_form"]) == ("valid", CANONICAL_FORM)
    assert signoff["signature_hash"] == stored.content_hash
    assert signoff["printed_name"] == stored.printed_name
    [event] = before["adverse_events"]
    assert (event["causality_signature_status"], event["causality_printed_name"]) == (
        "valid",
        investigator_a.get_full_name(),
    )
    assert event["causality_signed_by"] == investigator_a.get_username()
    assert event["causality_meaning"] == (
        "I have assessed how this adverse event relates to each study intervention."
    )
    assert len(event["causality_signature_hash"]) == 64
    [end] = before["end_of_study"]
    assert (end["signature_status"], end["signed_by"], end["signed_at"]) == (
        "valid",
        investigator_a.get_username(),
        "2026-03-12T07:00:00+00:00",
    )

    with time_machine.travel(site_time(participant.site, 2026, 3, 12, 16, 0), tick=False):
        changes = {**EVENT, "outcome": "recovered"}
        adverse_event_update(
            adverse_event=rash,
            user=coordinator_a,
            reason="resolved",
            criteria=changes.pop("criteria"),
            **changes,
        )
    screening = stored.screening
    screening.answers = {**screening.answers, "weight_kg": "71"}
    audited_save(screening, reason="typing error")
    after = export(tmp_path, "after", free_text=True)
    [signoff] = [r for r in after["signoffs"] if r["study_number"] == participant.study_number]
    assert signoff["signature_status"] == "invalidated"
    assert signoff["signature_hash"] == stored.content_hash  # what was signed, kept
    [event] = after["adverse_events"]
    assert event["causality_signature_status"] == "invalidated"
    assert event["causality_signature_invalidated_at"] == "2026-03-12T08:00:00+00:00"
    assert event["causality_signature_invalidated_reason"] == (
        "The adverse event changed after signing: resolved"
    )
    assert [r["signature_status"] for r in after["end_of_study"]] == ["valid"]


def test_the_signature_columns_are_in_the_dictionary(signed_trial, tmp_path):
    directory = tmp_path / "bundle"
    directory.mkdir()
    bundle_write(directory=directory, options=ExportOptions(datasets=SIGNED), source="command")
    dictionary = {
        (row["dataset"], row["column"]): row
        for row in csv_rows((directory / DICTIONARY_FILE).read_bytes())
    }
    for dataset, prefix in (
        ("signoffs", ""),
        ("adverse_events", "causality_"),
        ("end_of_study", ""),
    ):
        status = dictionary[dataset, f"{prefix}signature_status"]
        assert status["allowed_values"] == (
            "unsigned=Not signed | valid=Valid | invalidated=Invalidated: changed after signing"
        )
        assert dictionary[dataset, f"{prefix}signature_hash"]["type"] == "text"
    # The reason may quote what a user typed: free text, written only when asked for.
    de_identified = export(tmp_path, "plain")
    assert "causality_signature_invalidated_reason" not in de_identified["adverse_events"][0]
