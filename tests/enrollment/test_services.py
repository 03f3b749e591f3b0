"""Enrollment services: registry, screening, consent, refusal, withdrawal, sign-off, gate."""

import datetime
import threading
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from arms.models import Allocation
from arms.services import participant_randomize
from enrollment import services
from enrollment.models import (
    Consent,
    ConsentRefusal,
    EligibilitySignoff,
    Participant,
    ReconsentStatus,
    ReconsentTask,
    Screening,
    Signer,
    Withdrawal,
)
from enrollment.selectors import (
    randomization_gate,
    version_reconsent_due,
    versions_in_force_at,
)
from tests.enrollment.conftest import MRN, NAME, eligible_answers, site_today
from tests.factories import (
    PASSWORD,
    ConsentVersionFactory,
    ParticipantFactory,
    SiteFactory,
    UserFactory,
    active_randomization_list,
    ready_participant,
    user_with_role,
)
from trialsite.core.models import Role, SignatureFailure
from trialsite.core.protocol import definition_from_toml
from trialsite.core.services import protocol_load

# --- Registry ------------------------------------------------------------------------------------


def test_study_numbers_follow_the_site_sequence(protocol, site_a, site_b, coordinator_a):
    numbers = [ParticipantFactory(site=site_a, user=coordinator_a).study_number for _ in range(3)]
    other = ParticipantFactory(site=site_b, user=coordinator_a)
    assert numbers == ["SHE-0001", "SHE-0002", "SHE-0003"]
    assert other.study_number == "WUH-0001"


def test_identifiers_are_encrypted_at_rest(participant_a):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, mrn FROM enrollment_participant WHERE id = %s", [participant_a.pk]
        )
        stored_name, stored_mrn = cursor.fetchone()
        cursor.execute(
            "SELECT name, mrn FROM enrollment_historicalparticipant WHERE id = %s",
            [participant_a.pk],
        )
        history_name, history_mrn = cursor.fetchone()
    for stored in (stored_name, stored_mrn, history_name, history_mrn):
        assert NAME not in stored and MRN not in stored
        assert stored.startswith("gAAAA")  # a Fernet token
    fresh = Participant.objects.get(pk=participant_a.pk)
    assert (fresh.name, fresh.mrn) == (NAME, MRN)
    assert str(fresh) == "SHE-0001"


def test_the_same_mrn_at_a_site_points_to_the_existing_participant(participant_a, coordinator_a):
    with pytest.raises(services.DuplicateParticipant) as caught:
        ParticipantFactory(site=participant_a.site, user=coordinator_a, mrn=" she-mrn-77341 ")
    assert caught.value.participant == participant_a
    assert Participant.objects.count() == 1


def test_the_same_mrn_at_another_site_is_another_patient(participant_a, site_b, coordinator_a):
    other = ParticipantFactory(site=site_b, user=coordinator_a, mrn=MRN)
    assert other.study_number == "WUH-0001"
    assert other.mrn_hash != participant_a.mrn_hash


def test_a_rejected_registration_takes_no_number(protocol, site_a, coordinator_a):
    tomorrow = site_today(site_a) + timedelta(days=1)
    with pytest.raises(ValidationError) as caught:
        ParticipantFactory(site=site_a, user=coordinator_a, date_of_birth=tomorrow)
    assert caught.value.message_dict == {
        "date_of_birth": ["The date of birth cannot be in the future."]
    }
    assert ParticipantFactory(site=site_a, user=coordinator_a).study_number == "SHE-0001"


def test_an_age_over_120_is_refused(protocol, site_a, coordinator_a):
    born = site_today(site_a).replace(year=site_today(site_a).year - 121)
    with pytest.raises(ValidationError) as caught:
        ParticipantFactory(site=site_a, user=coordinator_a, date_of_birth=born)
    assert caught.value.message_dict == {
        "date_of_birth": ["This date of birth gives an age over 120."]
    }
    assert Participant.objects.count() == 0


@override_settings(FIELD_ENCRYPTION_KEY="")
def test_without_a_key_identifiers_are_not_stored(protocol, site_a, coordinator_a):
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEY is not set"):
        ParticipantFactory(site=site_a, user=coordinator_a)
    assert Participant.objects.count() == 0


def test_concurrent_registrations_get_gap_free_numbers(transactional_db):
    protocol_load(definition=definition_from_toml(settings.PROTOCOL_FILE))
    site = SiteFactory(code="SHE")
    user = UserFactory()
    errors = []

    def register(n):
        try:
            ParticipantFactory(site=site, user=user, mrn=f"CONC{n}")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=register, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    numbers = sorted(Participant.objects.values_list("study_number", flat=True))
    assert numbers == [f"SHE-{n:04d}" for n in range(1, 9)]


# --- Screening -----------------------------------------------------------------------------------


def test_screening_records_the_decision_criterion_by_criterion(participant_a, coordinator_a):
    screening = services.participant_screen(
        participant=participant_a, user=coordinator_a, answers=eligible_answers(participant_a.site)
    )
    assert screening.decision == "eligible"
    assert screening.failures == {}
    by_code = {r["code"]: r for r in screening.results}
    assert list(by_code) == [
        "I1", "I2", "I3", "I4", "E1", "E2", "E3", "E4", "E5", "E6",
        "E7", "E8", "E9", "E10", "E11", "E12",
    ]  # fmt: skip
    assert by_code["I3"]["reason"] == "BMI 22.8 kg/m2 is within 20 to 30"
    assert by_code["I4"]["outcome"] == "pending"
    assert screening.answers["height_cm"] == "165"
    assert screening.answers["sex"] == "F"


def test_bmi_above_30_fails_i3(participant_a, coordinator_a):
    answers = eligible_answers(participant_a.site, height_cm=170, weight_kg=89.6)
    screening = services.participant_screen(
        participant=participant_a, user=coordinator_a, answers=answers
    )
    assert screening.decision == "ineligible"
    assert screening.failures == {"I3": "BMI 31.0 kg/m2 is above 30"}


def test_rescreening_keeps_the_old_screening(participant_a, coordinator_a):
    site = participant_a.site
    first = services.participant_screen(
        participant=participant_a,
        user=coordinator_a,
        answers=eligible_answers(site, E9=None),
    )
    second = services.participant_screen(
        participant=participant_a, user=coordinator_a, answers=eligible_answers(site)
    )
    assert (first.decision, second.decision) == ("incomplete", "eligible")
    assert list(participant_a.screenings.order_by("pk")) == [first, second]


def test_impossible_answers_save_nothing(participant_a, coordinator_a):
    today = site_today(participant_a.site)
    answers = eligible_answers(
        participant_a.site,
        diagnosis_date=today + timedelta(days=1),
        weight_kg=301,
        severity="critical",
    )
    with pytest.raises(ValidationError) as caught:
        services.participant_screen(participant=participant_a, user=coordinator_a, answers=answers)
    assert caught.value.message_dict == {
        "diagnosis_date": ["The date of diagnosis cannot be in the future."],
        "weight_kg": ["Weight must be between 20 and 300 kg."],
        "severity": [
            "Critical needs mechanical ventilation, shock or organ failure needing ICU care."
        ],
    }
    assert Screening.objects.count() == 0


def test_screening_twice_with_one_token_creates_one(participant_a, coordinator_a):
    token = uuid.uuid4()
    kwargs = {
        "participant": participant_a,
        "user": coordinator_a,
        "answers": eligible_answers(participant_a.site),
        "submission_token": token,
    }
    assert services.participant_screen(**kwargs) == services.participant_screen(**kwargs)
    assert Screening.objects.count() == 1


def test_consent_on_the_current_version_meets_i4(participant_a, coordinator_a, consent_version):
    record_consent(participant_a, coordinator_a, consent_version)
    screening = services.participant_screen(
        participant=participant_a, user=coordinator_a, answers=eligible_answers(participant_a.site)
    )
    i4 = next(r for r in screening.results if r["code"] == "I4")
    assert (i4["outcome"], i4["reason"]) == ("met", "Consent on the current version is recorded")


# --- Consent -------------------------------------------------------------------------------------


def record_consent(participant, user, version, *, at=None, signer=Signer.PARTICIPANT, **kwargs):
    return services.consent_record(
        participant=participant,
        user=user,
        version=version,
        consented_at=at or timezone.now() - timedelta(minutes=5),
        signer=signer,
        copy_given=True,
        **kwargs,
    )


def test_consent_cannot_be_in_the_future(participant_a, coordinator_a, consent_version):
    with pytest.raises(ValidationError) as caught:
        record_consent(
            participant_a, coordinator_a, consent_version, at=timezone.now() + timedelta(minutes=5)
        )
    assert caught.value.message_dict == {
        "consented_at": ["The time of consent cannot be in the future."]
    }
    assert Consent.objects.count() == 0


def test_consent_cannot_precede_the_versions_effective_date(
    participant_a, coordinator_a, consent_version
):
    # 23:59 in Shanghai on the day before the version took effect (15:59 UTC).
    before = datetime.datetime(2026, 1, 14, 15, 59, tzinfo=datetime.UTC)
    with pytest.raises(ValidationError) as caught:
        record_consent(participant_a, coordinator_a, consent_version, at=before)
    assert caught.value.message_dict == {
        "consented_at": ["The time of consent is before version 1.0 took effect on 2026-01-15."]
    }
    # 00:00 on the effective day, site time, is accepted.
    on_the_day = datetime.datetime(2026, 1, 14, 16, 0, tzinfo=datetime.UTC)
    assert record_consent(participant_a, coordinator_a, consent_version, at=on_the_day).pk


def test_only_the_current_version_may_be_used(participant_a, coordinator_a, consent_version):
    newer = ConsentVersionFactory(
        version="2.0",
        irb_approval_date=site_today(participant_a.site) - timedelta(days=3),
        effective_date=site_today(participant_a.site) - timedelta(days=1),
    )
    with pytest.raises(ValidationError) as caught:
        record_consent(participant_a, coordinator_a, consent_version)
    assert caught.value.message_dict == {
        "version": ["Only the current version may be used for a new consent: v2.0 (English)."]
    }
    assert record_consent(participant_a, coordinator_a, newer).version == newer


def test_a_version_not_yet_in_effect_is_refused(participant_a, coordinator_a, protocol):
    future = ConsentVersionFactory(
        version="3.0",
        irb_approval_date=site_today(participant_a.site),
        effective_date=site_today(participant_a.site) + timedelta(days=10),
    )
    with pytest.raises(ValidationError) as caught:
        record_consent(participant_a, coordinator_a, future, at=timezone.now())
    assert caught.value.message_dict["version"] == ["Version v3.0 (English) is not in effect."]


def test_an_lar_consent_needs_name_and_relationship(participant_a, coordinator_a, consent_version):
    with pytest.raises(ValidationError) as caught:
        record_consent(participant_a, coordinator_a, consent_version, signer=Signer.LAR)
    assert caught.value.message_dict == {
        "lar_name": ["Give the representative's name."],
        "lar_relationship": ["Give the representative's relationship."],
    }
    with pytest.raises(ValidationError) as caught:
        record_consent(participant_a, coordinator_a, consent_version, witness_needed=True)
    assert caught.value.message_dict == {"witness_name": ["Name the impartial witness."]}
    assert Consent.objects.count() == 0


def test_a_version_in_force_from_the_sites_today_is_current_before_utcs_midnight(
    participant_a, coordinator_a, consent_version, site_a
):
    """At 00:01 in Shanghai (16:01 UTC, still yesterday in UTC) a version effective from
    today is the one in force at the site: its participants on the older one are due."""
    with time_machine.travel(datetime.datetime(2026, 11, 25, 15, 0, tzinfo=datetime.UTC)):
        record_consent(participant_a, coordinator_a, consent_version)
    with time_machine.travel(datetime.datetime(2026, 11, 25, 16, 1, tzinfo=datetime.UTC)):
        newer = ConsentVersionFactory(
            version="2.0",
            irb_approval_date=datetime.date(2026, 11, 20),
            effective_date=datetime.date(2026, 11, 26),
        )
        due = version_reconsent_due(coordinator_a)
        assert [(p.study_number, c.version.version) for p, c in due] == [("SHE-0001", "1.0")]
        assert versions_in_force_at([site_a]) == {newer.pk}
        # Re-consented a minute into the site's day: on study on the version in force.
        assert record_consent(participant_a, coordinator_a, newer, at=timezone.now()).version
        assert version_reconsent_due(coordinator_a) == []


def test_lar_consent_opens_a_task_that_in_person_consent_closes(
    participant_a, coordinator_a, consent_version
):
    lar = record_consent(
        participant_a,
        coordinator_a,
        consent_version,
        signer=Signer.LAR,
        lar_name="Zhang Min",
        lar_relationship="daughter",
    )
    task = ReconsentTask.objects.get()
    assert (task.participant, task.lar_consent, task.status) == (
        participant_a,
        lar,
        ReconsentStatus.OPEN,
    )
    own = record_consent(participant_a, coordinator_a, consent_version)
    task.refresh_from_db()
    assert (task.status, task.done_by_consent) == (ReconsentStatus.DONE, own)
    assert task.history.first().history_change_reason == "Re-consented in person"


def test_a_newer_version_puts_participants_on_study_on_the_reconsent_list(
    participant_a, coordinator_a, coordinator_b, consent_version, site_a
):
    withdrawn = ParticipantFactory(site=site_a, user=coordinator_a)
    treatment_only = ParticipantFactory(site=site_a, user=coordinator_a)
    never_consented = ParticipantFactory(site=site_a, user=coordinator_a)  # noqa: F841
    for p in (participant_a, withdrawn, treatment_only):
        record_consent(p, coordinator_a, consent_version)
    services.withdrawal_record(
        participant=withdrawn,
        user=coordinator_a,
        scope="follow_up",
        withdrawn_on=site_today(site_a),
        reason="Moved away",
    )
    services.withdrawal_record(
        participant=treatment_only,
        user=coordinator_a,
        scope="treatment",
        withdrawn_on=site_today(site_a),
        reason="Side effects",
    )
    assert version_reconsent_due(coordinator_a) == []
    ConsentVersionFactory(
        version="2.0",
        irb_approval_date=site_today(site_a) - timedelta(days=2),
        effective_date=site_today(site_a),
    )
    due = version_reconsent_due(coordinator_a)
    assert [p.study_number for p, _ in due] == ["SHE-0001", "SHE-0003"]
    assert version_reconsent_due(coordinator_b) == []
    assert "No consent on the current consent version is recorded." in randomization_gate(
        participant_a
    )


def test_refusal_is_recorded_with_its_reason(participant_a, coordinator_a):
    refusal = services.consent_refusal_record(
        participant=participant_a,
        user=coordinator_a,
        refused_on=site_today(participant_a.site),
        reason="Does not want an infusion",
    )
    assert (refusal.participant, refusal.reason) == (participant_a, "Does not want an infusion")
    with pytest.raises(ValidationError):
        services.consent_refusal_record(
            participant=participant_a,
            user=coordinator_a,
            refused_on=site_today(participant_a.site) + timedelta(days=1),
            reason="x",
        )
    assert ConsentRefusal.objects.count() == 1


def test_withdrawal_records_its_scope_and_blocks_randomization(
    participant_a, coordinator_a, consent_version
):
    with pytest.raises(ValidationError) as caught:
        services.withdrawal_record(
            participant=participant_a,
            user=coordinator_a,
            scope="data",
            withdrawn_on=site_today(participant_a.site),
            reason="No longer wishes",
        )
    assert caught.value.messages == ["There is no consent to withdraw."]
    record_consent(participant_a, coordinator_a, consent_version)
    withdrawal = services.withdrawal_record(
        participant=participant_a,
        user=coordinator_a,
        scope="data",
        withdrawn_on=site_today(participant_a.site),
        reason="No longer wishes",
    )
    assert withdrawal.get_scope_display() == "Treatment, follow-up and use of data"
    assert randomization_gate(participant_a)[-1] == (
        f"Consent was withdrawn on {site_today(participant_a.site).isoformat()}."
    )
    assert Withdrawal.objects.count() == 1


# --- Sign-off and the gate -----------------------------------------------------------------------


def screen(participant, user, **changes):
    return services.participant_screen(
        participant=participant, user=user, answers=eligible_answers(participant.site, **changes)
    )


def test_signoff_needs_the_investigators_password(participant_a, investigator_a):
    screen(participant_a, investigator_a)
    with pytest.raises(ValidationError) as caught:
        services.eligibility_signoff(
            participant=participant_a, user=investigator_a, password="wrong-password-1"
        )
    assert caught.value.message_dict == {"password": ["The password is not correct."]}
    assert EligibilitySignoff.objects.count() == 0


def test_signoff_records_name_time_and_meaning(participant_a, investigator_a):
    screening = screen(participant_a, investigator_a)
    signoff = services.eligibility_signoff(
        participant=participant_a, user=investigator_a, password=PASSWORD
    )
    assert signoff.screening == screening
    assert signoff.printed_name == investigator_a.get_full_name()
    assert signoff.meaning == "I confirm this patient is eligible."
    assert abs(signoff.signed_at - timezone.now()) < timedelta(seconds=5)
    again = services.eligibility_signoff(
        participant=participant_a, user=investigator_a, password=PASSWORD
    )
    assert again == signoff and EligibilitySignoff.objects.count() == 1


def test_only_an_investigator_of_the_site_signs(participant_a, coordinator_a, site_b):
    screen(participant_a, coordinator_a)
    other_investigator = user_with_role(Role.INVESTIGATOR, site_b)
    for user in (coordinator_a, other_investigator):
        with pytest.raises(ValidationError) as caught:
            services.eligibility_signoff(participant=participant_a, user=user, password=PASSWORD)
        assert caught.value.messages == [
            "Only an investigator of the participant's site can sign off."
        ]
    assert EligibilitySignoff.objects.count() == 0


def test_an_ineligible_screening_cannot_be_signed(participant_a, investigator_a):
    screen(participant_a, investigator_a, E3=True)
    with pytest.raises(ValidationError) as caught:
        services.eligibility_signoff(
            participant=participant_a, user=investigator_a, password=PASSWORD
        )
    assert caught.value.messages == ["The latest screening is not eligible: nothing to sign off."]


def test_a_screening_that_cannot_be_signed_is_refused_before_the_password(
    participant_a, investigator_a
):
    with pytest.raises(ValidationError) as caught:
        services.eligibility_signoff(
            participant=participant_a, user=investigator_a, password="wrong-password-1"
        )
    assert caught.value.messages == ["No screening is recorded: nothing to sign off."]
    screen(participant_a, investigator_a, E3=True)
    with pytest.raises(ValidationError) as caught:
        services.eligibility_signoff(
            participant=participant_a, user=investigator_a, password="wrong-password-1"
        )
    assert caught.value.messages == ["The latest screening is not eligible: nothing to sign off."]
    # No attempt counted towards the lock-out: the password was never checked.
    assert SignatureFailure.objects.count() == 0


def test_a_randomized_participant_is_not_screened_again(
    protocol, site_a, coordinator_a, administrator
):
    active_randomization_list(administrator=administrator, per_stratum=3)
    participant = ready_participant(site=site_a, user=coordinator_a)
    allocation = participant_randomize(
        participant=participant, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    screenings = list(Screening.objects.values_list("pk", "decision"))
    with pytest.raises(ValidationError) as caught:
        screen(participant, coordinator_a, E3=True)
    assert caught.value.messages == [
        f"{participant.study_number} is randomized: "
        "a randomized participant cannot be screened again."
    ]
    assert list(Screening.objects.values_list("pk", "decision")) == screenings
    assert list(Allocation.objects.values_list("pk", "arm", "status")) == [
        (allocation.pk, allocation.arm_id, "valid")
    ]


def test_the_gate_names_each_missing_item(
    participant_a, coordinator_a, investigator_a, consent_version
):
    assert randomization_gate(participant_a) == [
        "No screening is recorded.",
        "No consent on the current consent version is recorded.",
        "No investigator has signed off the latest screening.",
    ]
    screen(participant_a, coordinator_a, E9=None)
    assert randomization_gate(participant_a)[0] == (
        "The latest screening is incomplete, not eligible."
    )
    screen(participant_a, coordinator_a)
    assert randomization_gate(participant_a) == [
        "No consent on the current consent version is recorded.",
        "No investigator has signed off the latest screening.",
    ]
    record_consent(
        participant_a,
        coordinator_a,
        consent_version,
        signer=Signer.LAR,
        lar_name="Zhang Min",
        lar_relationship="daughter",
    )
    assert randomization_gate(participant_a) == [
        "No investigator has signed off the latest screening."
    ]
    services.eligibility_signoff(participant=participant_a, user=investigator_a, password=PASSWORD)
    assert randomization_gate(participant_a) == []
    # A new screening needs its own sign-off.
    screen(participant_a, coordinator_a)
    assert randomization_gate(participant_a) == [
        "No investigator has signed off the latest screening."
    ]


# --- Site time at the exact instant --------------------------------------------------------------

SHANGHAI_MIDNIGHT = datetime.datetime(2026, 3, 9, 16, 0, tzinfo=datetime.UTC)  # 10 March 00:00


@pytest.mark.parametrize(
    ("now", "accepted"),
    [
        (SHANGHAI_MIDNIGHT - timedelta(minutes=1), False),  # 9 March 23:59 at the site
        (SHANGHAI_MIDNIGHT, True),
        (SHANGHAI_MIDNIGHT + timedelta(minutes=1), True),
    ],
)
def test_screening_date_is_judged_in_site_time(participant_a, coordinator_a, now, accepted):
    answers = eligible_answers(
        participant_a.site,
        screening_date=datetime.date(2026, 3, 10),
        diagnosis_date=datetime.date(2026, 3, 8),
    )
    with time_machine.travel(now, tick=False):
        if accepted:
            screening = services.participant_screen(
                participant=participant_a, user=coordinator_a, answers=answers
            )
            assert screening.decision == "eligible"
        else:
            with pytest.raises(ValidationError) as caught:
                services.participant_screen(
                    participant=participant_a, user=coordinator_a, answers=answers
                )
            assert caught.value.message_dict == {
                "screening_date": ["The date of screening cannot be in the future."]
            }
            assert Screening.objects.count() == 0


def test_consent_time_in_the_future_by_one_second_is_refused(
    participant_a, coordinator_a, consent_version
):
    with time_machine.travel(SHANGHAI_MIDNIGHT, tick=False):
        with pytest.raises(ValidationError):
            record_consent(
                participant_a,
                coordinator_a,
                consent_version,
                at=SHANGHAI_MIDNIGHT + timedelta(seconds=1),
            )
        assert record_consent(participant_a, coordinator_a, consent_version, at=SHANGHAI_MIDNIGHT)


def test_the_gate_asks_for_the_egfr_the_dose_plan_needs(participant_a, coordinator_a):
    # The protocol's nirmatrelvir dose depends on eGFR: it must be known before the draw,
    # since a refusal after it would reveal the arm.
    screen(participant_a, coordinator_a, egfr=None)
    assert (
        "eGFR (mL/min/1.73 m²) is not recorded on the latest screening (the dose plan needs it)."
        in randomization_gate(participant_a)
    )
    screen(participant_a, coordinator_a, egfr=Decimal("45"))
    assert not any("eGFR" in item for item in randomization_gate(participant_a))
