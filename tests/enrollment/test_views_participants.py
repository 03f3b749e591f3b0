"""Registration and the participant page: access, identifiers, bad input, double submit."""

from datetime import timedelta

import pytest
from django.urls import reverse

from enrollment.models import Participant
from tests.enrollment.conftest import MRN, NAME, site_today

REGISTER = reverse("enrollment:participant_register")


def registration(site, **changes):
    data = {
        "site": site.pk,
        "name": "Li Na",
        "mrn": "H-000981",
        "sex": "F",
        "date_of_birth": "1968-04-02",
        "contact": "+86 138 0000 0000",
    }
    data.update(changes)
    return data


def detail(participant):
    return reverse("enrollment:participant_detail", args=[participant.study_number])


def test_coordinator_registers_a_patient(client_for, coordinator_a, site_a, protocol):
    response = client_for(coordinator_a).post(REGISTER, registration(site_a))
    participant = Participant.objects.get()
    assert response.status_code == 302
    assert response.url == detail(participant)
    assert participant.study_number == "SHE-0001"
    assert (participant.name, participant.mrn, participant.sex) == ("Li Na", "H-000981", "F")


def test_bad_input_keeps_what_was_typed_and_saves_nothing(
    client_for, coordinator_a, site_a, protocol
):
    tomorrow = (site_today(site_a) + timedelta(days=1)).isoformat()
    response = client_for(coordinator_a).post(
        REGISTER, registration(site_a, date_of_birth=tomorrow)
    )
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors == {"date_of_birth": ["The date of birth cannot be in the future."]}
    assert 'value="H-000981"' in response.content.decode()
    assert f'value="{tomorrow}"' in response.content.decode()
    assert Participant.objects.count() == 0


def test_age_over_120_is_a_field_error(client_for, coordinator_a, site_a, protocol):
    response = client_for(coordinator_a).post(
        REGISTER, registration(site_a, date_of_birth="1900-01-01")
    )
    assert response.context["form"].errors == {
        "date_of_birth": ["This date of birth gives an age over 120."]
    }
    assert Participant.objects.count() == 0


def test_a_registered_mrn_leads_to_the_existing_participant(
    client_for, coordinator_a, participant_a
):
    response = client_for(coordinator_a).post(
        REGISTER, registration(participant_a.site, mrn=MRN.lower()), follow=True
    )
    assert response.redirect_chain == [(detail(participant_a), 302)]
    assert "This MRN is already registered at this site as SHE-0001." in (response.content.decode())
    assert Participant.objects.count() == 1


def test_double_submit_registers_once(client_for, coordinator_a, site_a, protocol):
    client = client_for(coordinator_a)
    first = client.post(REGISTER, registration(site_a))
    second = client.post(REGISTER, registration(site_a))
    assert first.url == second.url == reverse("enrollment:participant_detail", args=["SHE-0001"])
    assert Participant.objects.count() == 1


def test_outsider_cannot_register_at_another_site(client_for, coordinator_b, site_a, protocol):
    response = client_for(coordinator_b).post(REGISTER, registration(site_a))
    assert response.status_code == 200
    assert list(response.context["form"].errors) == ["site"]
    assert Participant.objects.count() == 0


@pytest.mark.parametrize("who", ["data_manager", "administrator"])
def test_only_site_staff_register(client_for, cast, who, protocol, site_a):
    assert client_for(cast[who]).get(REGISTER).status_code == 403


def test_monitor_cannot_post(client_for, monitor, site_a, protocol):
    assert client_for(monitor).post(REGISTER, registration(site_a)).status_code == 403
    assert Participant.objects.count() == 0


@pytest.mark.parametrize("who", ["coordinator_a", "investigator_a"])
def test_own_site_staff_see_the_name_on_the_participant_page(client_for, cast, who, participant_a):
    page = client_for(cast[who]).get(detail(participant_a)).content.decode()
    assert NAME in page and MRN in page
    assert "SHE-0001" in page


@pytest.mark.parametrize("who", ["data_manager", "monitor", "administrator"])
def test_all_site_roles_see_the_study_number_only(client_for, cast, who, participant_a):
    response = client_for(cast[who]).get(detail(participant_a))
    page = response.content.decode()
    assert response.status_code == 200
    assert "SHE-0001" in page
    assert NAME not in page and MRN not in page


ACTIONS = ["", "screen/", "consent/", "refusal/", "withdraw/", "sign-off/"]


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("method", ["get", "post"])
def test_another_sites_participant_is_a_404(
    client_for, coordinator_b, participant_a, action, method
):
    response = getattr(client_for(coordinator_b), method)(detail(participant_a) + action)
    # Sign-off is for investigators: a coordinator of any site is refused before the lookup.
    assert response.status_code == (403 if action == "sign-off/" else 404)


def test_another_sites_investigator_gets_404_on_signoff(client_for, participant_a, site_b):
    from tests.factories import user_with_role
    from trialsite.core.models import Role

    outsider = user_with_role(Role.INVESTIGATOR, site_b)
    response = client_for(outsider).get(detail(participant_a) + "sign-off/")
    assert response.status_code == 404


def test_participant_list_is_scoped_to_the_users_sites(
    client_for, coordinator_a, coordinator_b, participant_a
):
    assert (
        "SHE-0001"
        in client_for(coordinator_a).get(reverse("enrollment:participant_list")).content.decode()
    )
    page = client_for(coordinator_b).get(reverse("enrollment:participant_list")).content.decode()
    assert "SHE-0001" not in page


def test_participant_list_pages_by_fifty(client_for, coordinator_a, site_a, protocol):
    from tests.factories import ParticipantFactory

    for _ in range(51):
        ParticipantFactory(site=site_a, user=coordinator_a)
    client = client_for(coordinator_a)
    url = reverse("enrollment:participant_list")
    first = client.get(url).context["page"]
    assert (len(first.object_list), first.paginator.num_pages) == (50, 2)
    last = client.get(url, {"page": 2}).context["page"]
    assert [p.study_number for p in last.object_list] == ["SHE-0051"]


def test_the_participant_page_asks_the_randomization_gate_once(
    client_for, coordinator_a, investigator_a, site_a, protocol
):
    """The panel and the timeline both show whether the participant is ready: the page works
    the gate out once (it reads the withdrawals for it, and the page once for its own list)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import ready_participant

    participant = ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)
    client = client_for(coordinator_a)
    client.get(detail(participant))  # the session's first request writes its own rows
    with CaptureQueriesContext(connection) as queries:
        response = client.get(detail(participant))
    assert response.status_code == 200
    assert b"Ready to randomize" in response.content
    withdrawal_reads = [q for q in queries if 'FROM "enrollment_withdrawal"' in q["sql"]]
    assert len(withdrawal_reads) == 2, [q["sql"][:80] for q in withdrawal_reads]
    allocation_reads = [q for q in queries if q["sql"].startswith('SELECT "arms_allocation"."id"')]
    assert len(allocation_reads) == 1, [q["sql"][:80] for q in allocation_reads]
