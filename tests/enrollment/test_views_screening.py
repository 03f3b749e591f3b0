"""The screening form generated from the criteria, its bad input, and the screening log."""

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from arms.services import participant_randomize
from enrollment import services
from enrollment.models import EligibilityCriterion, Screening
from tests.enrollment.conftest import eligible_answers, eligible_post, site_today
from tests.factories import ParticipantFactory, active_randomization_list, ready_participant
from trialsite.core.audit import audited_save


def screen_url(participant):
    return reverse("enrollment:participant_screen", args=[participant.study_number])


def test_the_form_carries_each_criterion_code(client_for, coordinator_a, participant_a):
    response = client_for(coordinator_a).get(screen_url(participant_a))
    page = response.content.decode()
    assert response.status_code == 200
    for code in ["I1", "I2", "I3", "I4", *(f"E{n}" for n in range(1, 13))]:
        assert f"{code} · " in page, code
    assert "E5 · Pregnant or lactating" in page
    assert "I3 · Height (cm)" in page
    assert "E8 · NYHA class" in page


def test_pregnancy_is_not_asked_of_a_male(client_for, coordinator_a, site_a, protocol):
    male = ParticipantFactory(site=site_a, user=coordinator_a, sex="M")
    response = client_for(coordinator_a).get(screen_url(male))
    assert "E5" not in response.context["form"].fields
    assert "Pregnant or lactating" not in response.content.decode()
    client_for(coordinator_a).post(screen_url(male), eligible_post(site_a, E5=None))
    screening = Screening.objects.get()
    e5 = next(r for r in screening.results if r["code"] == "E5")
    assert (screening.decision, e5["outcome"]) == ("eligible", "not_asked")


def test_an_eligible_screening_is_saved(client_for, coordinator_a, participant_a):
    response = client_for(coordinator_a).post(
        screen_url(participant_a), eligible_post(participant_a.site)
    )
    assert response.status_code == 302
    screening = Screening.objects.get()
    assert (screening.decision, screening.screened_by) == ("eligible", coordinator_a)


def test_bmi_31_shows_the_failing_criterion(client_for, coordinator_a, participant_a):
    client = client_for(coordinator_a)
    post = eligible_post(participant_a.site, height_cm="170", weight_kg="89.6")
    response = client.post(screen_url(participant_a), post, follow=True)
    page = response.content.decode()
    assert "Screening saved: Ineligible." in page
    assert "BMI 31.0 kg/m2 is above 30" in page
    assert Screening.objects.get().failures == {"I3": "BMI 31.0 kg/m2 is above 30"}


def test_unanswered_questions_give_incomplete(client_for, coordinator_a, participant_a):
    post = eligible_post(participant_a.site, E9=None, weight_kg=None)
    client_for(coordinator_a).post(screen_url(participant_a), post)
    assert Screening.objects.get().decision == "incomplete"


def test_bad_input_is_shown_beside_its_field_and_nothing_is_saved(
    client_for, coordinator_a, participant_a
):
    today = site_today(participant_a.site)
    post = eligible_post(
        participant_a.site,
        screening_date=(today + timedelta(days=1)).isoformat(),
        height_cm="99",
        weight_kg="300.5",
    )
    response = client_for(coordinator_a).post(screen_url(participant_a), post)
    assert response.status_code == 200
    assert response.context["form"].errors == {
        "screening_date": ["The date of screening cannot be in the future."],
        "height_cm": ["Height must be between 100 and 250 cm."],
        "weight_kg": ["Weight must be between 20 and 300 kg."],
    }
    page = response.content.decode()
    assert 'value="300.5"' in page and 'value="99"' in page
    assert Screening.objects.count() == 0


def test_diagnosis_after_screening_is_a_field_error(client_for, coordinator_a, participant_a):
    today = site_today(participant_a.site)
    post = eligible_post(
        participant_a.site,
        screening_date=(today - timedelta(days=3)).isoformat(),
        diagnosis_date=(today - timedelta(days=1)).isoformat(),
    )
    response = client_for(coordinator_a).post(screen_url(participant_a), post)
    assert response.context["form"].errors == {
        "diagnosis_date": ["The date of diagnosis is after the date of screening."]
    }
    assert Screening.objects.count() == 0


def test_severity_the_findings_do_not_support_is_a_field_error(
    client_for, coordinator_a, participant_a
):
    post = eligible_post(participant_a.site, respiratory_rate="22", spo2="96")
    response = client_for(coordinator_a).post(screen_url(participant_a), post)
    assert response.context["form"].errors == {
        "severity": [
            "Severe needs respiratory rate >= 30/min, SpO2 <= 93%, PaO2/FiO2 <= 300 mmHg, "
            "or lesions progressing > 50% on imaging."
        ]
    }
    assert Screening.objects.count() == 0


def test_double_submit_creates_one_screening(client_for, coordinator_a, participant_a):
    client = client_for(coordinator_a)
    post = eligible_post(participant_a.site)
    assert client.post(screen_url(participant_a), post).status_code == 302
    assert client.post(screen_url(participant_a), post).status_code == 302
    assert Screening.objects.count() == 1


def add_criteria(protocol, count):
    """Extra yes/no exclusions, as a longer protocol would have."""
    for n in range(count):
        audited_save(
            EligibilityCriterion(
                protocol=protocol,
                code=f"X{n}",
                kind="exclusion",
                text=f"Extra exclusion {n}",
                rule="yes_no",
                order=100 + n,
            )
        )


def count_queries(client, participant, extra_codes):
    with CaptureQueriesContext(connection) as get:
        assert client.get(screen_url(participant)).status_code == 200
    post = eligible_post(participant.site, submission_token=str(uuid.uuid4()))
    post.update({code: "no" for code in extra_codes})
    with CaptureQueriesContext(connection) as saved:
        assert client.post(screen_url(participant), post).status_code == 302
    return len(get), len(saved)


def test_query_count_does_not_grow_with_the_criteria(
    client_for, coordinator_a, participant_a, protocol
):
    client = client_for(coordinator_a)
    # The session's first request also reads the user's second factor once, for the session.
    assert client.get(reverse("home")).status_code == 302
    assert protocol.criteria.count() == 16
    with_16 = count_queries(client, participant_a, [])
    add_criteria(protocol, 24)
    assert protocol.criteria.count() == 40
    with_40 = count_queries(client, participant_a, [f"X{n}" for n in range(24)])
    assert with_16 == with_40
    latest = Screening.objects.order_by("-pk").first()
    assert (latest.decision, len(latest.results)) == ("eligible", 40)


# --- The screening log ---------------------------------------------------------------------------

LOG = reverse("enrollment:screening_log")


@pytest.fixture
def screenings(participant_a, coordinator_a, coordinator_b, site_b, site_a):
    site = participant_a.site
    services.participant_screen(
        participant=participant_a, user=coordinator_a, answers=eligible_answers(site, E3=True)
    )
    services.participant_screen(
        participant=participant_a, user=coordinator_a, answers=eligible_answers(site)
    )
    other = ParticipantFactory(site=site_a, user=coordinator_a)
    services.participant_screen(
        participant=other,
        user=coordinator_a,
        answers=eligible_answers(site, height_cm=170, weight_kg=89.6),
    )
    wuh = ParticipantFactory(site=site_b, user=coordinator_b)
    services.participant_screen(
        participant=wuh, user=coordinator_b, answers=eligible_answers(site_b, E9=None)
    )


def log_rows(response):
    return [(s.participant.study_number, s.decision) for s in response.context["page"]]


def test_log_lists_every_screening_including_rescreening(client_for, data_manager, screenings):
    response = client_for(data_manager).get(LOG)
    assert sorted(log_rows(response)) == [
        ("SHE-0001", "eligible"),
        ("SHE-0001", "ineligible"),
        ("SHE-0002", "ineligible"),
        ("WUH-0001", "incomplete"),
    ]
    assert "BMI 31.0 kg/m2 is above 30" in response.content.decode()


def test_log_filters_by_site_decision_and_reason(client_for, data_manager, site_a, screenings):
    client = client_for(data_manager)
    assert len(log_rows(client.get(LOG, {"site": site_a.pk}))) == 3
    assert log_rows(client.get(LOG, {"decision": "incomplete"})) == [("WUH-0001", "incomplete")]
    assert log_rows(client.get(LOG, {"reason": "I3"})) == [("SHE-0002", "ineligible")]
    assert log_rows(client.get(LOG, {"reason": "E3"})) == [("SHE-0001", "ineligible")]


def test_log_shows_a_coordinator_only_their_sites(client_for, coordinator_b, screenings):
    response = client_for(coordinator_b).get(LOG)
    assert log_rows(response) == [("WUH-0001", "incomplete")]
    assert "SHE-0001" not in response.content.decode()


def test_consort_counts_use_each_patients_latest_screening(
    client_for, data_manager, coordinator_a, participant_a, screenings
):
    services.consent_refusal_record(
        participant=participant_a,
        user=coordinator_a,
        refused_on=site_today(participant_a.site),
        reason="Declined",
    )
    consort = client_for(data_manager).get(LOG).context["consort"]
    # SHE-0001 was ineligible (E3), then eligible on re-screening: counted once, eligible.
    assert (consort.assessed, consort.eligible, consort.incomplete, consort.declined) == (
        3,
        1,
        1,
        1,
    )
    assert consort.excluded_by_reason == {"I3": 1}


def test_consort_counts_are_scoped_to_the_users_sites(client_for, coordinator_b, screenings):
    consort = client_for(coordinator_b).get(LOG).context["consort"]
    assert (consort.assessed, consort.incomplete, consort.excluded_by_reason) == (1, 1, {})


def screen_many(site, user, count):
    for _ in range(count):
        participant = ParticipantFactory(site=site, user=user)
        services.participant_screen(
            participant=participant, user=user, answers=eligible_answers(site, E3=True)
        )


@pytest.mark.parametrize("path", [LOG, reverse("enrollment:participant_list")])
def test_list_pages_take_the_same_queries_for_n_and_10n_rows(
    client_for, data_manager, coordinator_a, site_a, protocol, path
):
    client = client_for(data_manager)
    screen_many(site_a, coordinator_a, 2)
    with CaptureQueriesContext(connection) as few:
        assert client.get(path).status_code == 200
    screen_many(site_a, coordinator_a, 18)
    with CaptureQueriesContext(connection) as many:
        response = client.get(path)
    assert "SHE-0020" in response.content.decode()
    assert len(few) == len(many)


def test_the_results_say_absent_for_an_exclusion_and_met_for_an_inclusion(
    client_for, coordinator_a, participant_a
):
    # "E1 met" would read as "the exclusion applies": an exclusion that does not stand in
    # the way is shown as absent.
    client = client_for(coordinator_a)
    response = client.post(
        screen_url(participant_a), eligible_post(participant_a.site), follow=True
    )
    page = response.content.decode()
    row = page.split('data-criterion="E1"')[1].split("</tr>")[0]
    assert "<td>absent</td>" in row
    row = page.split('data-criterion="I1"')[1].split("</tr>")[0]
    assert "<td>met</td>" in row


# --- Protocol text is text -----------------------------------------------------------------------

TEMPLATE_PAYLOAD = "{{ user.password }}"
SCRIPT_PAYLOAD = "\"'><svg onload=alert(1)>"


@pytest.mark.parametrize("code", ["I3", "E1"])  # a fieldset legend; a yes/no question's label
def test_criterion_text_is_shown_as_text_never_run(
    client_for, coordinator_a, administrator, participant_a, protocol, code
):
    criterion = protocol.criteria.get(code=code)
    criterion.text = f"{TEMPLATE_PAYLOAD} {SCRIPT_PAYLOAD}"
    audited_save(criterion, user=administrator, reason="Amendment typed in the admin")
    response = client_for(coordinator_a).get(screen_url(participant_a))
    page = response.content.decode()
    assert response.status_code == 200
    assert coordinator_a.password not in page
    assert "<svg" not in page
    assert f"{code} · {{{{ user.password }}}} &quot;&#x27;&gt;&lt;svg onload=alert(1)&gt;" in page


# --- After randomization -------------------------------------------------------------------------


def test_a_randomized_participant_is_not_offered_or_given_the_screening_form(
    client_for, coordinator_a, administrator, site_a, protocol
):
    active_randomization_list(administrator=administrator, per_stratum=3)
    participant = ready_participant(site=site_a, user=coordinator_a)
    participant_randomize(participant=participant, user=coordinator_a, idempotency_key=uuid.uuid4())
    client = client_for(coordinator_a)
    detail = reverse("enrollment:participant_detail", args=[participant.study_number])
    assert screen_url(participant) not in client.get(detail).content.decode()
    message = (
        f"{participant.study_number} is randomized: "
        "a randomized participant cannot be screened again."
    )
    for response in (
        client.get(screen_url(participant), follow=True),
        client.post(screen_url(participant), eligible_post(site_a, E3="yes"), follow=True),
    ):
        assert response.redirect_chain == [(detail, 302)]
        assert [str(m) for m in response.context["messages"]] == [message]
    assert Screening.objects.filter(participant=participant).count() == 1
