"""A ward with something on every page, and the pages each role opens: lists and forms.

Shared by the browser checks that walk every page (widths, accessibility): one place to add a
page when a view is added.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.utils import timezone

from arms.models import Allocation, RandomizationList
from arms.services import participant_randomize
from dosing.models import ScheduledDose
from dosing.services import dose_record
from enrollment.models import Consent, Signer
from tests.dosing.conftest import randomize, screened_participant
from tests.factories import (
    ParticipantFactory,
    active_randomization_list,
    bulk_allocated,
    current_consent_version,
    ready_participant,
)
from trialsite.core.audit import audited_save

ROLE_USERS = {
    "coordinator": "coordinator_a",
    "investigator": "investigator_a",
    "data_manager": "data_manager",
    "monitor": "monitor",
    "administrator": "administrator",
}


@dataclass
class Ward:
    registered: str  # registered, not screened
    awaiting: str  # eligible, awaiting the investigator's sign-off
    ready: str  # ready to randomize
    allocated: str  # randomized through the service
    dosed: str  # on the MSC arm, day 1 given, day 4 due today (randomized 4 days ago)
    open_dose: int
    given_dose: int
    randomization_list: int
    lar_consent: int  # a consent a representative signed: their name is an identifier


def build_ward(*, site, cast) -> Ward:
    coordinator, investigator = cast["coordinator_a"], cast["investigator_a"]
    administrator = cast["administrator"]
    randomization_list = active_randomization_list(administrator=administrator, per_stratum=12)
    registered = ParticipantFactory(site=site, user=coordinator)
    awaiting = screened_participant(site=site, user=coordinator)
    ready = ready_participant(site=site, user=coordinator, investigator=investigator)
    allocated = ready_participant(site=site, user=coordinator, investigator=investigator)
    participant_randomize(participant=allocated, user=coordinator, idempotency_key=uuid.uuid4())
    # A consent by a representative: the re-consent list has a row.
    lar_consent = audited_save(
        Consent(
            participant=ready,
            version=current_consent_version(coordinator),
            consented_at=timezone.now() - timedelta(hours=1),
            signer=Signer.LAR,
            lar_name="Wang Lei",
            lar_relationship="son",
            obtained_by=coordinator,
            copy_given=True,
        ),
        user=coordinator,
    )
    zone = site.zone
    today = timezone.localdate(timezone=zone)
    dosed = screened_participant(site=site, user=coordinator, weight_kg="70.5")
    day1, day4 = randomize(
        dosed,
        "MSC",
        at=datetime.combine(today - timedelta(days=4), time(10, 0), tzinfo=zone),
        user=coordinator,
    )
    dose_record(
        dose=day1,
        user=coordinator,
        outcome="given",
        given_at=day1.due_at + timedelta(minutes=20),
        amount=day1.planned_amount,
        lot_number="UCMSC-2603-A",
    )
    # Last: bulk rows number themselves after the participants already registered.
    bulk_allocated(
        site=site,
        user=coordinator,
        randomization_list=RandomizationList.objects.get(pk=randomization_list.pk),
        count=3,
    )
    assert Allocation.objects.filter(participant=allocated).exists()
    assert ScheduledDose.objects.filter(pk=day4.pk).exists()
    return Ward(
        registered=registered.study_number,
        awaiting=awaiting.study_number,
        ready=ready.study_number,
        allocated=allocated.study_number,
        dosed=dosed.study_number,
        open_dose=day4.pk,
        given_dose=day1.pk,
        randomization_list=randomization_list.pk,
        lar_consent=lar_consent.pk,
    )


def pages_by_role(ward: Ward) -> dict[str, list[str]]:
    """Every list page and form page, per role, as that role reaches them."""
    shared = [
        "/participants/",
        "/arms/roster/",
        "/sites/",
        "/sites/SHE/",
        "/protocol/",
        "/oversight/consort/",
        "/oversight/record-status/",
        "/oversight/enrollment/",
    ]
    return {
        "coordinator": [
            "/home/coordinator/",
            "/home/coordinator/queues/consents/",
            *shared,
            "/participants/register/",
            f"/participants/{ward.ready}/",
            f"/participants/{ward.registered}/screen/",
            f"/participants/{ward.registered}/consent/",
            f"/participants/{ward.registered}/refusal/",
            f"/participants/{ward.ready}/withdraw/",
            "/participants/screening-log/",
            "/participants/re-consent/",
            "/participants/consent-versions/",
            f"/arms/randomize/{ward.ready}/",
            f"/arms/allocations/{ward.allocated}/",
            "/arms/roster/MSC/",
            "/dosing/today/",
            f"/dosing/doses/{ward.open_dose}/record/",
            f"/dosing/doses/{ward.given_dose}/correct/",
            f"/dosing/doses/{ward.given_dose}/void/",
            f"/dosing/participants/{ward.dosed}/",
            "/dosing/reminders/",
            f"/audit/enrollment.consent/{ward.lar_consent}/",
            f"/audit/dosing.scheduleddose/{ward.given_dose}/",
        ],
        "investigator": [
            "/home/investigator/",
            *shared,
            f"/participants/{ward.awaiting}/",
            f"/participants/{ward.awaiting}/sign-off/",
            "/participants/screening-log/",
            "/participants/re-consent/",
            f"/dosing/participants/{ward.dosed}/",
            "/dosing/today/",
            f"/audit/dosing.scheduleddose/{ward.given_dose}/",
        ],
        "data_manager": [
            "/home/data_manager/",
            "/home/data_manager/queues/screenings/",
            *shared,
            "/audit/",
            "/exports/",
            "/dosing/reminders/",
            f"/participants/{ward.allocated}/",
        ],
        "monitor": [
            "/home/monitor/",
            *shared,
            "/audit/",
            "/participants/screening-log/",
            f"/audit/enrollment.consent/{ward.lar_consent}/",
        ],
        "administrator": [
            "/home/administrator/",
            *shared,
            "/users/",
            "/users/access-review/",
            "/audit/",
            "/exports/",
            "/sites/SHE/edit/",
            "/participants/consent-versions/",
            "/participants/consent-versions/new/",
            "/arms/lists/",
            "/arms/lists/upload/",
            f"/arms/lists/{ward.randomization_list}/",
            f"/arms/lists/{ward.randomization_list}/entries/",
            "/arms/balance/",
            f"/arms/allocations/{ward.allocated}/",
            f"/arms/allocations/{ward.allocated}/in-error/",
        ],
    }
