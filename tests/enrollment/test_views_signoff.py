"""The sign-off page: offered and opened only for an eligible screening awaiting its
signature; the results it shows read the consent as it stands."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from enrollment import services
from enrollment.models import EligibilitySignoff
from tests.enrollment.conftest import eligible_answers
from tests.factories import PASSWORD
from trialsite.core.models import SignatureFailure

SIGN_OFF_LINK = "Sign off eligibility</a>"


def signoff_url(participant):
    return reverse("enrollment:eligibility_signoff", args=[participant.study_number])


def detail_url(participant):
    return reverse("enrollment:participant_detail", args=[participant.study_number])


def screen(participant, user, **changes):
    return services.participant_screen(
        participant=participant, user=user, answers=eligible_answers(participant.site, **changes)
    )


def i4_row(page: str) -> str:
    return page.split('data-criterion="I4"')[1].split("</tr>")[0]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (None, "No screening is recorded: nothing to sign off."),
        ({"E3": True}, "The latest screening is not eligible: nothing to sign off."),
        ({"E9": None}, "The latest screening is not eligible: nothing to sign off."),
    ],
    ids=["not screened", "ineligible", "incomplete"],
)
def test_a_screening_that_is_not_eligible_is_refused_before_the_password(
    client_for, investigator_a, coordinator_a, participant_a, changes, message
):
    if changes is not None:
        screen(participant_a, coordinator_a, **changes)
    client = client_for(investigator_a)
    assert SIGN_OFF_LINK not in client.get(detail_url(participant_a)).content.decode()
    for response in (
        client.get(signoff_url(participant_a), follow=True),
        client.post(signoff_url(participant_a), {"password": "wrong-password-1"}, follow=True),
    ):
        assert response.redirect_chain == [(detail_url(participant_a), 302)]
        assert [str(m) for m in response.context["messages"]] == [message]
        assert 'type="password"' not in response.content.decode()
    assert EligibilitySignoff.objects.count() == 0
    assert SignatureFailure.objects.count() == 0


def test_an_eligible_screening_is_offered_signed_and_then_no_longer_offered(
    client_for, investigator_a, coordinator_a, participant_a
):
    screen(participant_a, coordinator_a)
    client = client_for(investigator_a)
    assert SIGN_OFF_LINK in client.get(detail_url(participant_a)).content.decode()
    assert 'type="password"' in client.get(signoff_url(participant_a)).content.decode()
    response = client.post(signoff_url(participant_a), {"password": PASSWORD}, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["Eligibility signed off."]
    assert SIGN_OFF_LINK not in response.content.decode()
    response = client.get(signoff_url(participant_a), follow=True)
    assert response.redirect_chain == [(detail_url(participant_a), 302)]
    assert [str(m) for m in response.context["messages"]] == [
        "The latest screening is already signed off."
    ]
    assert EligibilitySignoff.objects.count() == 1


def test_the_coordinator_is_not_offered_the_signoff(client_for, coordinator_a, participant_a):
    screen(participant_a, coordinator_a)
    page = client_for(coordinator_a).get(detail_url(participant_a)).content.decode()
    assert SIGN_OFF_LINK not in page


def test_i4_reads_met_once_consent_is_recorded_after_screening(
    client_for, investigator_a, coordinator_a, participant_a, consent_version
):
    screen(participant_a, coordinator_a)
    client = client_for(investigator_a)
    row = i4_row(client.get(detail_url(participant_a)).content.decode())
    assert "<td>pending</td>" in row
    assert "Consent on the current version is not recorded yet" in row
    services.consent_record(
        participant=participant_a,
        user=coordinator_a,
        version=consent_version,
        consented_at=timezone.now() - timedelta(minutes=5),
        signer="participant",
        copy_given=True,
    )
    for url in (detail_url(participant_a), signoff_url(participant_a)):
        row = i4_row(client.get(url).content.decode())
        assert "<td>met</td>" in row, url
        assert "<td>Consent on the current version is recorded</td>" in row, url
