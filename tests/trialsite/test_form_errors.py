"""A refused form says why: each message is visible beside its field, and a summary at the top
of the page links to every field in error (and to the form's own errors)."""

import pytest
from django.urls import reverse

from enrollment.models import Participant, Screening
from tests.enrollment.conftest import eligible_post
from tests.factories import ParticipantFactory
from tests.trialsite.html import Page

SEVERE_NEEDS = (
    "Severe needs respiratory rate >= 30/min, SpO2 <= 93%, PaO2/FiO2 <= 300 mmHg, "
    "or lesions progressing > 50% on imaging."
)


@pytest.fixture
def participant(protocol, site_a, coordinator_a):
    return ParticipantFactory(site=site_a, user=coordinator_a, sex="F")


def summary_of(page: Page):
    summaries = page.find("div", data_error_summary="")
    assert len(summaries) == 1, "one error summary"
    summary = summaries[0]
    assert summary.attrs["role"] == "alert"
    assert summary.attrs["tabindex"] == "-1"
    return summary


def links_in(page: Page, summary) -> dict[str, str]:
    return {e.attrs["href"]: e.text for e in page.find("a") if summary in e.ancestors}


def test_severe_without_a_finding_shows_its_message_beside_the_inline_radios(
    client_for, coordinator_a, participant
):
    url = reverse("enrollment:participant_screen", args=[participant.study_number])
    post = eligible_post(participant.site, respiratory_rate=None)  # SpO2 95: not severe
    response = client_for(coordinator_a).post(url, post)

    assert response.status_code == 200
    assert Screening.objects.count() == 0
    page = Page(response.content.decode())
    shown = page.texts_containing(SEVERE_NEEDS)
    assert shown, "the message is on the page"
    assert [t for t in shown if t.hidden] == []
    assert any(t.inside(id="div_id_severity") for t in shown), "beside the field"
    summary = summary_of(page)
    assert [h.text for h in page.find("h2") if summary in h.ancestors] == [
        "There is a problem with what was entered"
    ]
    assert links_in(page, summary) == {"#id_severity_0": f"I2 · Severity: {SEVERE_NEEDS}"}
    assert page.find("input", id="id_severity_0")


def test_a_missing_choice_on_stacked_radios_is_visible_and_linked(
    client_for, coordinator_a, site_a, protocol
):
    post = {"site": site_a.pk, "name": "Wang Fang", "mrn": "SHE-1", "date_of_birth": "1970-05-01"}
    response = client_for(coordinator_a).post(reverse("enrollment:participant_register"), post)

    assert response.status_code == 200
    assert Participant.objects.count() == 0
    page = Page(response.content.decode())
    shown = page.texts_containing("This field is required.")
    assert shown and [t for t in shown if t.hidden] == []
    assert any(t.inside(id="div_id_sex") for t in shown)
    assert links_in(page, summary_of(page)) == {"#id_sex_0": "Sex: This field is required."}


def test_a_form_error_not_tied_to_a_field_is_linked_too(client, coordinator_a):
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong-password"})

    page = Page(response.content.decode())
    message = (
        "Please enter a correct username and password. Note that both fields may be case-sensitive."
    )
    assert links_in(page, summary_of(page)) == {"#non-field-errors": message}
    [errors] = page.find("div", id="non-field-errors")
    assert not errors.hidden and message in errors.text


def test_a_page_without_errors_has_no_summary(client_for, coordinator_a, participant):
    url = reverse("enrollment:participant_screen", args=[participant.study_number])
    page = Page(client_for(coordinator_a).get(url).content.decode())
    assert page.find("div", data_error_summary="") == []
