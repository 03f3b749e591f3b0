"""A small trial with something in every dataset, and identifiers worth hunting for."""

import csv
import datetime
import io
import zipfile
from dataclasses import dataclass

import time_machine
from django.utils import timezone

from enrollment.models import Consent, Participant, Signer, Withdrawal
from enrollment.services import participant_register, participant_screen
from outcomes.models import AdverseEvent, ScheduledVisit
from outcomes.services import visit_record
from tests.enrollment.conftest import eligible_answers
from tests.factories import current_consent_version
from tests.outcomes.visit_helpers import randomized, site_time
from trialsite.core.audit import audited_save

OLDEST_NAME = "Zhang Meihua"
OLDEST_MRN = "SHE-MRN-90817"
OLDEST_CONTACT = "+86 138 0013 8000"
OLDEST_BORN = datetime.date(1931, 2, 14)
LAR_NAME = "Wang Lei"
WITNESS_NAME = "Chen Jing"
FORMULA_TERM = '=HYPERLINK("http://evil.example","click")'


@dataclass
class Seeded:
    participant: Participant
    oldest: Participant


def seed_trial(*, site, cast) -> Seeded:
    coordinator = cast["coordinator_a"]
    at = site_time(site, 2026, 3, 10, 10, 0)
    allocation = randomized(
        site=site,
        coordinator=coordinator,
        investigator=cast["investigator_a"],
        administrator=cast["administrator"],
        at=at,
    )
    participant = allocation.participant
    with time_machine.travel(at + datetime.timedelta(days=12), tick=False):
        oldest = participant_register(
            site=site,
            user=coordinator,
            name=OLDEST_NAME,
            mrn=OLDEST_MRN,
            sex="F",
            date_of_birth=OLDEST_BORN,
            contact=OLDEST_CONTACT,
        )
        audited_save(
            Consent(
                participant=oldest,
                version=current_consent_version(coordinator),
                consented_at=timezone.now(),
                signer=Signer.LAR,
                lar_name=LAR_NAME,
                lar_relationship="daughter",
                witness_needed=True,
                witness_name=WITNESS_NAME,
                obtained_by=coordinator,
                copy_given=True,
            ),
            user=coordinator,
        )
        # Screened through the service: the answers hold the date of birth, and I1 fails on age.
        participant_screen(participant=oldest, user=coordinator, answers=eligible_answers(site))
        audited_save(
            Withdrawal(
                participant=oldest,
                scope="data",
                withdrawn_on=timezone.localdate(timezone=site.zone),
                reason=f"Daughter {LAR_NAME} asked",
                recorded_by=coordinator,
            ),
            user=coordinator,
        )
        visits = list(ScheduledVisit.objects.filter(participant=participant).order_by("study_day"))
        # Day 0: WHO score given, SpO2 not done, PaO2 unanswered.
        visit_record(
            scheduled_visit=visits[0],
            user=coordinator,
            visit_date=visits[0].due_on,
            vital_status="alive",
            measurements={
                "who_score": 5,
                "spo2_not_done": True,
                "spo2_not_done_reason": "oximeter broken",
                "respiratory_support": "oxygen",
            },
        )
        # Recorded a day before its window opens: -1 day outside the window.
        early = visits[2]
        visit_record(
            scheduled_visit=early,
            user=coordinator,
            visit_date=early.window_start - datetime.timedelta(days=1),
            vital_status="alive",
            measurements={"who_score": 3},
        )
        audited_save(
            AdverseEvent(
                participant=participant,
                term=FORMULA_TERM,
                onset_date=visits[0].due_on,
                grade=2,
                action_taken="none",
                outcome="recovering",
                recorded_by=coordinator,
            ),
            user=coordinator,
        )
    return Seeded(participant=participant, oldest=oldest)


def identifiers() -> list[str]:
    """Every name, MRN, contact and date of birth in the database, and the consent's names."""
    found = [LAR_NAME, WITNESS_NAME]
    for participant in Participant.objects.all():
        found += [participant.name, participant.mrn, participant.date_of_birth.isoformat()]
        if participant.contact:
            found.append(participant.contact)
    return found


def read_zip(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as bundle:
        return {name.split("/", 1)[1]: bundle.read(name) for name in bundle.namelist()}


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
