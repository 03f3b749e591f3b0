"""E-signature passwords: wrong ones are counted, signing locks at the limit, admins are told.
And the hash that binds a signature to what it signed: one spelling per value, any signed
value changed changes it."""

import copy
import hashlib
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone

from tests.factories import PASSWORD
from trialsite.core.models import SignatureFailure
from trialsite.core.signatures import (
    CANONICAL_FORM,
    canonical_form,
    content_hash,
    signature_verify,
)

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


# --- Signatures bound to what was signed -------------------------------------------------------

SIGNED = {
    "record": "example",
    "signature": {
        "signer_id": 7,
        "printed_name": "Li Wei",
        "signed_at": datetime(2026, 3, 10, 6, 5, 12, 345678, tzinfo=UTC),
        "meaning": "I confirm this patient is eligible.",
    },
    "screening": {
        "screening_date": date(2026, 3, 10),
        "answers": {"weight_kg": "62", "severity": "severe", "E1": False, "nyha_class": 1},
        "decision": "eligible",
        "results": [{"code": "I2", "outcome": "met"}],
        "height": Decimal("165.0"),
    },
}


def test_the_same_values_give_the_same_hash_whatever_their_order_or_spelling():
    same = copy.deepcopy(SIGNED)
    same["screening"]["answers"] = dict(reversed(list(same["screening"]["answers"].items())))
    # The same moment in Shanghai, and the same decimal written with another scale.
    same["signature"]["signed_at"] = SIGNED["signature"]["signed_at"].astimezone(
        ZoneInfo("Asia/Shanghai")
    )
    same["screening"]["height"] = Decimal("165")
    assert content_hash(same) == content_hash(SIGNED)
    assert re.fullmatch(r"[0-9a-f]{64}", content_hash(SIGNED))


def test_the_hash_is_sha256_of_the_tagged_canonical_form():
    assert canonical_form({"b": [1, "二"], "a": date(2026, 3, 10)}) == (
        f'{CANONICAL_FORM}\n{{"a":"2026-03-10","b":[1,"二"]}}'.encode()
    )
    assert (
        content_hash({"a": 1})
        == hashlib.sha256(f'{CANONICAL_FORM}\n{{"a":1}}'.encode()).hexdigest()
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["signature"].update(printed_name="Li Wei (locum)"),
        lambda c: c["signature"].update(
            signed_at=c["signature"]["signed_at"] + timedelta(microseconds=1)
        ),
        lambda c: c["signature"].update(meaning="I have read this."),
        lambda c: c["signature"].update(signer_id=8),
        lambda c: c["screening"]["answers"].update(weight_kg="62.5"),
        lambda c: c["screening"]["answers"].update(E1=None),
        lambda c: c["screening"]["answers"].update(nyha_class="1"),
        lambda c: c["screening"].update(decision="ineligible"),
        lambda c: c["screening"].update(screening_date=date(2026, 3, 9)),
        lambda c: c["screening"]["results"].append({"code": "E1", "outcome": "met"}),
        lambda c: c["screening"].update(height=Decimal("165.1")),
    ],
)
def test_any_signed_value_changed_gives_another_hash(change):
    changed = copy.deepcopy(SIGNED)
    change(changed)
    assert content_hash(changed) != content_hash(SIGNED)


def test_the_form_tag_is_part_of_the_hash_and_an_unknown_form_is_refused():
    with pytest.raises(ValueError, match="unknown canonical form 'trialsite-esig-0'"):
        content_hash(SIGNED, form="trialsite-esig-0")


@pytest.mark.parametrize(
    "value",
    [datetime(2026, 3, 10, 6, 5), float("nan"), object(), b"bytes"],  # noqa: DTZ001
)
def test_a_value_with_no_single_spelling_is_refused(value):
    with pytest.raises(TypeError):
        content_hash({"value": value})
