"""The investigator's signatures in outcomes, bound to what they sign: the causality of an
adverse event (and the event as assessed), and the end of study. A change after signing, by a
service or any other path, invalidates the signature; the pages say so and ask for it again;
signing again restores it and keeps the earlier one."""

import datetime
import re

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse

from dosing.models import ScheduledDose
from outcomes import rules
from outcomes.models import CausalityAssessment, EndOfStudy, EndReason, InterventionRelatedness
from outcomes.services import (
    adverse_event_record,
    adverse_event_update,
    causality_sign,
    end_of_study_sign,
    participant_study_end,
    sae_report_mark,
)
from tests.factories import PASSWORD, user_with_role
from tests.outcomes.ae_helpers import randomized_to, site_time
from trialsite.core.audit import audited_save
from trialsite.core.models import Role
from trialsite.core.signatures import (
    CANONICAL_FORM,
    SignatureStatus,
    content_hash,
    signature_is_valid,
    signature_state,
)

pytestmark = pytest.mark.django_db

INVALIDATED = "signature invalidated: changed after signing"
FEVER = {
    "term": "Fever",
    "onset_date": datetime.date(2026, 3, 11),
    "end_date": None,
    "grade": 3,
    "death_date": None,
    "serious": True,
    "criteria": {"hospitalisation"},
    "action_taken": "none",
    "outcome": "recovering",
}


@pytest.fixture(autouse=True)
def _locmem_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def msc(protocol, site_a, coordinator_a, investigator_a, administrator):
    return randomized_to(
        "MSC",
        site=site_a,
        coordinator=coordinator_a,
        investigator=investigator_a,
        administrator=administrator,
        at=site_time(site_a, 2026, 3, 10, 10, 0),
    )


@pytest.fixture
def on_day_2(site_a):
    with time_machine.travel(site_time(site_a, 2026, 3, 12, 15, 0), tick=False) as traveller:
        yield traveller


@pytest.fixture
def fever(msc, coordinator_a, on_day_2):
    return adverse_event_record(participant=msc.participant, user=coordinator_a, **FEVER)


def relatedness_for(participant, first="possible", second="not_related"):
    doses = list(ScheduledDose.objects.filter(participant=participant).order_by("sequence"))
    return {f"dose-{doses[0].pk}": first, f"dose-{doses[1].pk}": second}


@pytest.fixture
def assessed(fever, investigator_a):
    return causality_sign(
        adverse_event=fever,
        user=investigator_a,
        password=PASSWORD,
        expected=False,
        relatedness=relatedness_for(fever.participant),
    )


def fresh(assessment):
    return CausalityAssessment.objects.select_related("adverse_event").get(pk=assessment.pk)


def update(adverse_event, user, reason="grade corrected", **changes):
    values = {**FEVER, **changes}
    criteria = values.pop("criteria")
    return adverse_event_update(
        adverse_event=adverse_event, user=user, reason=reason, criteria=criteria, **values
    )


# --- Causality ------------------------------------------------------------------------------


def test_the_causality_stores_the_hash_of_the_assessment_and_the_event(assessed):
    assessment = fresh(assessed)
    assert (assessment.signature_status, assessment.content_form) == (
        SignatureStatus.VALID,
        CANONICAL_FORM,
    )
    content = rules.causality_content(
        assessment, assessment.adverse_event, assessment.relatedness.all()
    )
    assert assessment.content_hash == content_hash(content)
    assert content["adverse_event"]["grade"] == 3
    assert [row[3] for row in content["relatedness"]] == ["possible", "not_related"]
    assert signature_is_valid(assessment)


def test_changing_the_event_through_its_service_invalidates_the_causality_in_its_transaction(
    assessed, coordinator_a
):
    update(assessed.adverse_event, coordinator_a, grade=4)
    assessment = fresh(assessed)
    assert assessment.signature_status == SignatureStatus.INVALIDATED
    assert assessment.invalidated_at is not None
    assert assessment.invalidated_reason == (
        "The adverse event changed after signing: grade corrected"
    )
    # The manifestation stays: it is what was invalidated.
    assert (assessment.printed_name, assessment.signed_at) == (
        assessed.printed_name,
        assessed.signed_at,
    )
    assert assessment.history.first().history_change_reason == (
        "Signature invalidated: The adverse event changed after signing: grade corrected"
    )
    assert assessment.history.first().history_user == coordinator_a
    assert not signature_is_valid(assessment)


def test_an_update_that_leaves_the_signed_values_as_they_were_keeps_the_signature(
    assessed, coordinator_a
):
    update(assessed.adverse_event, coordinator_a, reason="checked, nothing to change")
    assert fresh(assessed).signature_status == SignatureStatus.VALID
    assert signature_is_valid(fresh(assessed))


def test_the_report_to_the_sponsor_is_not_part_of_what_the_causality_signs(assessed, coordinator_a):
    sae_report_mark(
        adverse_event=assessed.adverse_event,
        user=coordinator_a,
        reported_on=datetime.date(2026, 3, 12),
    )
    assert signature_is_valid(fresh(assessed))


def test_a_change_by_any_other_path_is_caught_by_the_hash(assessed):
    row = InterventionRelatedness.objects.filter(assessment=assessed).first()
    row.relatedness = "definite"
    audited_save(row, reason="edited in a shell")
    assessment = fresh(assessed)
    assert assessment.signature_status == SignatureStatus.VALID  # nobody marked it
    assert not signature_is_valid(assessment)
    assert signature_state(assessment) == SignatureStatus.INVALIDATED


def test_signing_again_restores_the_causality_and_keeps_the_earlier_signature(
    assessed, coordinator_a, investigator_a
):
    update(assessed.adverse_event, coordinator_a, grade=4)
    with pytest.raises(ValidationError):
        causality_sign(
            adverse_event=assessed.adverse_event,
            user=investigator_a,
            password=PASSWORD,
            expected=True,
            relatedness={},
        )
    again = causality_sign(
        adverse_event=assessed.adverse_event,
        user=investigator_a,
        password=PASSWORD,
        expected=True,
        relatedness=relatedness_for(assessed.adverse_event.participant, first="probable"),
    )
    assessment = fresh(again)
    assert assessment.pk == assessed.pk
    assert signature_is_valid(assessment)
    assert assessment.expected is True
    assert list(assessment.relatedness.order_by("pk").values_list("relatedness", flat=True)) == [
        "probable",
        "not_related",
    ]
    [earlier] = assessment.earlier_signatures
    assert earlier["content_hash"] == assessed.content_hash
    assert earlier["invalidated_reason"] == (
        "The adverse event changed after signing: grade corrected"
    )
    with pytest.raises(ValidationError) as refused:
        causality_sign(
            adverse_event=assessed.adverse_event,
            user=investigator_a,
            password=PASSWORD,
            expected=True,
            relatedness=relatedness_for(assessed.adverse_event.participant),
        )
    assert refused.value.messages == ["The causality of this adverse event is already signed."]


def test_the_pages_show_the_manifestation_the_invalidation_and_the_step_to_sign_again(
    assessed, coordinator_a, investigator_a, client_for
):
    participant = assessed.adverse_event.participant
    ae_list = reverse("outcomes:ae_list", args=[participant.study_number])
    detail = reverse("enrollment:participant_detail", args=[participant.study_number])
    sign_again = reverse("outcomes:ae_causality", args=[assessed.adverse_event_id])
    client = client_for(investigator_a)
    page = client.get(ae_list).content.decode()
    cell = page.split('data-testid="causality-signed"')[1].split("</td>")[0]
    assert f"Signed: {investigator_a.get_full_name()} · " in cell
    assert "2026-03-12 07:00:00 UTC" in cell
    assert "signature valid" in cell

    update(assessed.adverse_event, coordinator_a, grade=4)
    page = client.get(ae_list).content.decode()
    cell = page.split('data-testid="causality-signed"')[1].split("</td>")[0]
    assert INVALIDATED in cell
    assert "The adverse event changed after signing: grade corrected" in cell
    assert f'href="{sign_again}"' in cell
    page = client.get(detail).content.decode()
    due = page.split('data-testid="due-next"')[1].split("</ul>")[0]
    assert "Assess and sign the causality of Fever again" in due
    assert f'href="{sign_again}"' in due
    assert "Causality of Fever: signature invalidated: changed after signing" in page
    # Signing again starts from the earlier assessment, shown with its invalidated signature.
    form = client.get(sign_again).content.decode()
    assert INVALIDATED in form.split('data-testid="signing-again"')[1].split("</div>\n")[0]
    assert re.search(r'value="no"[^>]*checked', form)
    assert re.search(r'value="possible"[^>]*checked', form)
    # The coordinator sees the step, without the link to a form that would refuse them.
    page = client_for(coordinator_a).get(detail).content.decode()
    assert "Assess and sign the causality of Fever again" in page
    assert f'href="{sign_again}"' not in page


# --- End of study ----------------------------------------------------------------------------


@pytest.fixture
def ended(msc, coordinator_a, on_day_2):
    return participant_study_end(
        participant=msc.participant,
        user=coordinator_a,
        reason=EndReason.INVESTIGATOR,
        ended_on=datetime.date(2026, 3, 12),
        details="Transferred to another hospital's ICU",
    )


def test_an_end_of_study_awaits_the_investigators_signature(
    ended, investigator_a, coordinator_a, client_for
):
    assert ended.signature_status == SignatureStatus.UNSIGNED
    assert signature_state(ended) == SignatureStatus.UNSIGNED
    participant = ended.participant
    sign = reverse("outcomes:end_of_study_sign", args=[participant.study_number])
    detail = reverse("enrollment:participant_detail", args=[participant.study_number])
    page = client_for(investigator_a).get(detail).content.decode()
    due = page.split('data-testid="due-next"')[1].split("</ul>")[0]
    assert "The investigator&#x27;s signature on the end of study" in due
    assert f'href="{sign}"' in due
    with pytest.raises(ValidationError) as refused:
        end_of_study_sign(end=ended, user=coordinator_a, password=PASSWORD)
    assert refused.value.messages == [
        "Only an investigator of the participant's site can sign the end of study."
    ]


def test_the_end_of_study_is_signed_bound_invalidated_by_a_change_and_signed_again(
    ended, investigator_a, client_for
):
    with pytest.raises(ValidationError) as refused:
        end_of_study_sign(end=ended, user=investigator_a, password="not-my-password")
    assert refused.value.message_dict == {"password": ["The password is not correct."]}
    assert EndOfStudy.objects.get().signature_status == SignatureStatus.UNSIGNED

    end = end_of_study_sign(end=ended, user=investigator_a, password=PASSWORD)
    end = EndOfStudy.objects.get(pk=end.pk)
    assert end.meaning == "I confirm how and when this participant's study ended."
    assert end.content_hash == content_hash(rules.end_of_study_content(end))
    assert signature_is_valid(end)
    assert end.history.first().history_change_reason == "Signed by the investigator"

    end.details = "Transferred to another hospital"
    audited_save(end, reason="wording")
    end = EndOfStudy.objects.get(pk=end.pk)
    assert not signature_is_valid(end)
    page = client_for(investigator_a).get(
        reverse("outcomes:ae_list", args=[end.participant.study_number])
    )
    assert INVALIDATED in page.content.decode().split('data-testid="end-of-study"')[1]

    end_of_study_sign(end=end, user=investigator_a, password=PASSWORD)
    end = EndOfStudy.objects.get(pk=end.pk)
    assert signature_is_valid(end)
    assert len(end.earlier_signatures) == 1
    assert end.history.first().history_change_reason == (
        "Signed again after the signature was invalidated"
    )


def test_the_signing_page_signs_and_refuses_another_sites_staff(
    ended, investigator_a, coordinator_a, site_b, client_for
):
    participant = ended.participant
    sign = reverse("outcomes:end_of_study_sign", args=[participant.study_number])
    outsider = user_with_role(Role.INVESTIGATOR, site_b)
    assert client_for(outsider).get(sign).status_code == 404
    assert client_for(coordinator_a).get(sign).status_code == 403
    client = client_for(investigator_a)
    page = client.get(sign).content.decode()
    assert "I confirm how and when this participant&#x27;s study ended." in page
    response = client.post(sign, {"password": "not-my-password"})
    assert response.status_code == 200
    assert "The password is not correct." in response.content.decode()
    assert EndOfStudy.objects.get().signature_status == SignatureStatus.UNSIGNED
    response = client.post(sign, {"password": PASSWORD})
    assert response.status_code == 302
    assert signature_is_valid(EndOfStudy.objects.get())
    page = client.get(response["Location"]).content.decode()
    banner = page.split('data-testid="end-of-study"')[1].split("</div>\n</div>")[0]
    assert f"Signed: {investigator_a.get_full_name()} · " in banner
    assert "signature valid" in banner


# --- The investigator's queue ----------------------------------------------------------------


def test_the_investigators_home_asks_for_each_signature_to_give(
    assessed, ended, coordinator_a, investigator_a, client_for
):
    participant = ended.participant
    client = client_for(investigator_a)

    def queue(key) -> str:
        """The rows the home page shows for the queue; empty when it shows none."""
        page = client.get(reverse("role_home", args=["investigator"])).content.decode()
        marker = f'data-testid="queue-{key}"'
        return page.split(marker)[1].split("</table>")[0] if marker in page else ""

    sign_end = reverse("outcomes:end_of_study_sign", args=[participant.study_number])
    sign_again = reverse("outcomes:ae_causality", args=[assessed.adverse_event_id])
    assert f'href="{sign_end}"' in queue("ends-to-sign")
    assert f'href="{sign_again}"' not in queue("causality")
    end_of_study_sign(end=ended, user=investigator_a, password=PASSWORD)
    update(assessed.adverse_event, coordinator_a, grade=4)
    assert f'href="{sign_end}"' not in queue("ends-to-sign")
    causality = queue("causality")
    assert f'href="{sign_again}"' in causality
    assert "Assess and sign again" in causality
