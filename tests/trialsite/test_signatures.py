"""E-signature passwords: wrong ones are counted, signing locks at the limit, admins are told."""

from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone

from tests.factories import PASSWORD
from trialsite.core.models import SignatureFailure
from trialsite.core.signatures import signature_verify

pytestmark = pytest.mark.django_db


def wrong(user):
    with pytest.raises(ValidationError) as excinfo:
        signature_verify(user=user, password="not-my-password")
    return excinfo.value.message_dict["password"][0]


def test_the_right_password_signs_and_a_wrong_one_is_recorded(investigator_a):
    signature_verify(user=investigator_a, password=PASSWORD)
    assert wrong(investigator_a) == "The password is not correct."
    assert SignatureFailure.objects.filter(user=investigator_a).count() == 1


def test_signing_locks_at_the_limit_even_for_the_right_password_and_admins_are_told(
    investigator_a, administrator, settings, mailoutbox
):
    start = timezone.now().replace(microsecond=0)
    with time_machine.travel(start, tick=False):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            assert wrong(investigator_a) == "The password is not correct."
        until = (start + settings.AXES_COOLOFF_TIME).strftime("%Y-%m-%d %H:%M")
        locked = (
            f"Too many wrong passwords: electronic signing is locked for you until {until} "
            "UTC. The trial administrator has been told."
        )
        assert wrong(investigator_a) == locked
        with pytest.raises(ValidationError) as excinfo:
            signature_verify(user=investigator_a, password=PASSWORD)
        assert excinfo.value.message_dict == {"password": [locked]}
    assert [(m.subject, m.to) for m in mailoutbox] == [
        ("E-signature locked: bob", [administrator.email])
    ]
    with time_machine.travel(start + settings.AXES_COOLOFF_TIME + timedelta(seconds=1)):
        signature_verify(user=investigator_a, password=PASSWORD)
    assert len(mailoutbox) == 1


def test_one_users_failures_do_not_lock_another(investigator_a, coordinator_a, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        wrong(investigator_a)
    signature_verify(user=coordinator_a, password=PASSWORD)


def test_wrong_passwords_given_to_the_eligibility_signoff_stay_counted(
    protocol, site_a, coordinator_a, investigator_a
):
    from enrollment.models import Decision, Screening
    from enrollment.services import eligibility_signoff
    from tests.factories import ParticipantFactory
    from trialsite.core.audit import audited_save
    from trialsite.core.clock import site_today

    participant = ParticipantFactory(site=site_a, user=coordinator_a)
    # An eligible screening waiting for its sign-off: only then is a password asked for.
    audited_save(
        Screening(
            participant=participant,
            protocol=protocol,
            screened_by=coordinator_a,
            screening_date=site_today(site_a),
            answers={"severity": "severe"},
            decision=Decision.ELIGIBLE,
            results=[{"code": "I2", "outcome": "met", "reason": "severe"}],
        ),
        user=coordinator_a,
    )
    for _ in range(2):
        with pytest.raises(ValidationError):
            eligibility_signoff(
                participant=participant, user=investigator_a, password="not-my-password"
            )
    assert SignatureFailure.objects.filter(user=investigator_a).count() == 2
