"""The eligibility sign-off is bound to the screening it signs: a change to what was signed,
by any path, invalidates it; the page, the investigator's queue and the gate say so; signing
again restores it and keeps the earlier signature."""

import re
from datetime import UTC, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from enrollment import rules, selectors, services
from enrollment.models import EligibilitySignoff
from tests.enrollment.conftest import eligible_answers
from tests.factories import PASSWORD
from trialsite.core.audit import audited_save
from trialsite.core.signatures import (
    CANONICAL_FORM,
    SignatureStatus,
    content_hash,
    signature_invalidate,
    signature_is_valid,
    signature_state,
)

pytestmark = pytest.mark.django_db

INVALIDATED = "signature invalidated: changed after signing"


def signed(participant, investigator, coordinator):
    services.participant_screen(
        participant=participant, user=coordinator, answers=eligible_answers(participant.site)
    )
    return services.eligibility_signoff(
        participant=participant, user=investigator, password=PASSWORD
    )


def fresh(signoff):
    return EligibilitySignoff.objects.select_related("screening").get(pk=signoff.pk)


def test_the_signoff_stores_the_hash_of_the_screening_and_its_manifestation(
    participant_a, investigator_a, coordinator_a
):
    signoff = fresh(signed(participant_a, investigator_a, coordinator_a))
    assert (signoff.signature_status, signoff.content_form) == (
        SignatureStatus.VALID,
        CANONICAL_FORM,
    )
    assert signoff.content_hash == content_hash(rules.signoff_content(signoff, signoff.screening))
    assert signoff.signed_content()["screening"]["answers"]["weight_kg"] == "62"
    assert signature_is_valid(signoff)


def test_a_change_to_the_signed_screening_by_any_path_invalidates_the_signoff(
    participant_a, investigator_a, coordinator_a
):
    signoff = signed(participant_a, investigator_a, coordinator_a)
    screening = signoff.screening
    # Not through a service (none changes a screening): a data fix, a shell, a script.
    screening.answers = {**screening.answers, "weight_kg": "26"}
    audited_save(screening, reason="data fix")
    signoff = fresh(signoff)
    assert not signature_is_valid(signoff)
    assert signature_state(signoff) == SignatureStatus.INVALIDATED
    assert selectors.awaits_signoff(signoff.screening)
    assert (
        "The investigator's sign-off of the latest screening is invalidated: the screening "
        "changed after signing. It must be signed again."
    ) in selectors.randomization_gate(participant_a)


def test_a_change_to_the_signature_itself_invalidates_it(
    participant_a, investigator_a, coordinator_a
):
    signoff = signed(participant_a, investigator_a, coordinator_a)
    signoff.signed_at -= timedelta(days=1)
    audited_save(signoff, reason="back-dated")
    assert not signature_is_valid(fresh(signoff))


def test_values_the_signoff_does_not_sign_may_change(participant_a, investigator_a, coordinator_a):
    signoff = signed(participant_a, investigator_a, coordinator_a)
    screening = signoff.screening
    screening.recorded_at = timezone.now() - timedelta(hours=1)
    audited_save(screening, reason="time of entry corrected")
    assert signature_is_valid(fresh(signoff))
    assert selectors.randomization_gate(participant_a) == [
        "No consent on the current consent version is recorded."
    ]


def test_signing_again_restores_the_signature_and_keeps_the_earlier_one(
    participant_a, investigator_a, coordinator_a
):
    first = signed(participant_a, investigator_a, coordinator_a)
    screening = first.screening
    screening.answers = {**screening.answers, "weight_kg": "26"}
    audited_save(screening, reason="data fix")
    again = services.eligibility_signoff(
        participant=participant_a, user=investigator_a, password=PASSWORD
    )
    again = fresh(again)
    assert again.pk == first.pk
    assert signature_is_valid(again)
    assert again.content_hash != first.content_hash
    [earlier] = again.earlier_signatures
    assert earlier["content_hash"] == first.content_hash
    assert earlier["printed_name"] == first.printed_name
    assert earlier["invalidated_reason"] == "changed after signing"
    assert again.history.first().history_change_reason == (
        "Signed again after the signature was invalidated"
    )
    assert not selectors.awaits_signoff(again.screening)


def test_the_page_shows_the_manifestation_then_the_invalidation_and_the_next_step(
    client_for, participant_a, investigator_a, coordinator_a
):
    signoff = signed(participant_a, investigator_a, coordinator_a)
    detail = reverse("enrollment:participant_detail", args=[participant_a.study_number])
    client = client_for(investigator_a)
    page = client.get(detail).content.decode()
    footer = page.split('data-testid="signoff"')[1].split("</div>\n")[0]
    moment = signoff.signed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"Signed: {investigator_a.get_full_name()} · " in footer
    assert moment in footer
    assert "“I confirm this patient is eligible.”" in footer
    assert "signature valid" in footer
    assert 'data-kind="signoff_awaited"' not in page

    screening = signoff.screening
    screening.answers = {**screening.answers, "egfr": "29"}
    audited_save(screening, reason="data fix")
    page = client.get(detail).content.decode()
    assert INVALIDATED in page.split('data-testid="signoff"')[1]
    due = page.split('data-testid="due-next"')[1].split("</ul>")[0]
    assert "Sign eligibility off again: the signature was invalidated" in due
    assert reverse("enrollment:eligibility_signoff", args=[participant_a.study_number]) in due
    timeline = page.split('data-testid="timeline"')[1]
    assert "Eligibility sign-off: signature invalidated: changed after signing" in timeline

    home = client.get(reverse("role_home", args=["investigator"])).content.decode()
    queue = home.split('data-testid="signoffs-awaited"')[1].split("</section>")[0]
    assert participant_a.study_number in queue
    assert "signature invalidated: sign again" in queue

    form = client.get(
        reverse("enrollment:eligibility_signoff", args=[participant_a.study_number])
    ).content.decode()
    assert 'data-testid="signing-again"' in form
    assert INVALIDATED in form


def test_a_signoff_marked_invalidated_is_awaited_again_in_the_list_and_the_grid(
    client_for, participant_a, investigator_a, coordinator_a, data_manager
):
    signoff = signed(participant_a, investigator_a, coordinator_a)
    number = participant_a.study_number

    def states(client):
        listed = client.get(reverse("enrollment:participant_list")).content.decode()
        grid = client.get(reverse("oversight:record_status")).content.decode()
        row = re.search(rf'<tr data-participant="{number}">(.*?)</tr>', grid, re.S).group(1)
        return (
            re.search(r'data-signoff="(\w+)"', listed).group(1),
            re.search(r'data-step="signoff" data-status="(\w+)"', row).group(1),
        )

    client = client_for(data_manager)
    assert states(client) == ("signed", "done")
    signature_invalidate(record=signoff, user=investigator_a, reason="the screening was corrected")
    assert states(client) == ("awaited", "attention")
