"""The randomize page, the confirmation, marking in error."""

import uuid

import pytest
from django.urls import reverse
from django.utils import timezone

from arms import services
from arms.models import Allocation
from enrollment.models import Screening
from tests.factories import ready_participant

pytestmark = pytest.mark.django_db


def key_of(response) -> str:
    return str(response.context["form"]["idempotency_key"].value())


def test_coordinator_randomizes_and_sees_the_confirmation(ready_a, coordinator_a, client_for):
    client = client_for(coordinator_a)
    url = reverse("arms:randomize", args=[ready_a.study_number])
    page = client.get(url)
    assert page.status_code == 200
    assert page.context["missing"] == []
    response = client.post(url, {"idempotency_key": key_of(page)}, follow=True)
    allocation = Allocation.objects.get(participant=ready_a)
    assert response.redirect_chain == [
        (reverse("arms:allocation_detail", args=[ready_a.study_number]), 302)
    ]
    body = response.content.decode()
    assert allocation.arm.name in body
    assert allocation.randomization_number in body
    assert coordinator_a.get_full_name() in body  # who randomized
    local = timezone.localtime(allocation.randomized_at, ready_a.site.zone)
    assert f"{local:%Y-%m-%d %H:%M} UTC+08:00 (Asia/Shanghai)" in body  # when, in site time


def test_a_double_submit_of_the_same_page_randomizes_once(ready_a, coordinator_a, client_for):
    client = client_for(coordinator_a)
    url = reverse("arms:randomize", args=[ready_a.study_number])
    key = key_of(client.get(url))
    first = client.post(url, {"idempotency_key": key})
    second = client.post(url, {"idempotency_key": key})
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    assert Allocation.objects.filter(participant=ready_a).count() == 1


def test_a_participant_not_ready_shows_what_is_missing_and_no_button(
    ready_a, coordinator_a, client_for
):
    screening = Screening.objects.get(participant=ready_a)
    screening.decision = "incomplete"
    screening._change_reason = "test: an incomplete screening"
    screening.save()
    client = client_for(coordinator_a)
    url = reverse("arms:randomize", args=[ready_a.study_number])
    page = client.get(url)
    assert page.context["missing"] == ["The latest screening is incomplete, not eligible."]
    assert b'data-testid="randomize"' not in page.content
    response = client.post(url, {"idempotency_key": str(uuid.uuid4())})
    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "The latest screening is incomplete, not eligible."
    ]
    assert not Allocation.objects.exists()


@pytest.mark.parametrize(
    "role,status", [("coordinator_b", 404), ("data_manager", 403), ("monitor", 403)]
)
def test_others_cannot_randomize(cast, ready_a, client_for, role, status):
    client = client_for(cast[role])
    url = reverse("arms:randomize", args=[ready_a.study_number])
    assert client.get(url).status_code == status
    assert client.post(url, {"idempotency_key": str(uuid.uuid4())}).status_code in (status, 403)
    assert not Allocation.objects.exists()


def test_the_administrator_cannot_randomize(administrator, ready_a, client_for):
    url = reverse("arms:randomize", args=[ready_a.study_number])
    assert (
        client_for(administrator).post(url, {"idempotency_key": str(uuid.uuid4())}).status_code
        == 403
    )
    assert not Allocation.objects.exists()


@pytest.mark.parametrize(
    "role,status",
    [
        ("coordinator_a", 200),
        ("investigator_a", 200),
        ("coordinator_b", 404),
        ("data_manager", 200),
        ("monitor", 200),
        ("administrator", 200),
    ],
)
def test_the_allocation_page_is_site_scoped(cast, ready_a, client_for, role, status):
    services.participant_randomize(
        participant=ready_a, user=cast["coordinator_a"], idempotency_key=uuid.uuid4()
    )
    url = reverse("arms:allocation_detail", args=[ready_a.study_number])
    assert client_for(cast[role]).get(url).status_code == status


def test_the_randomizer_is_warned_when_fewer_than_ten_percent_are_left(
    protocol, site_a, administrator, coordinator_a, investigator_a, client_for
):
    from tests.factories import active_randomization_list

    randomization_list = active_randomization_list(administrator=administrator, per_stratum=10)
    total = randomization_list.strata.get(code="SHE-severe").entries.count()
    client = client_for(coordinator_a)
    warnings = []
    for _ in range(total - 1):
        participant = ready_participant(
            site=site_a, user=coordinator_a, investigator=investigator_a
        )
        url = reverse("arms:randomize", args=[participant.study_number])
        response = client.post(url, {"idempotency_key": str(uuid.uuid4())}, follow=True)
        warnings.append([str(m) for m in response.context["messages"]])
    assert warnings[:-1] == [[]] * (total - 2)
    assert warnings[-1] == [
        "Fewer than 10% of the entries of stratum SHE-severe are left (1). "
        "The trial administrator should provide more."
    ]


def test_the_administrator_marks_in_error_with_a_reason(
    ready_a, coordinator_a, administrator, client_for
):
    allocation = services.participant_randomize(
        participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    client = client_for(administrator)
    url = reverse("arms:allocation_mark_in_error", args=[ready_a.study_number])
    empty = client.post(url, {"reason": ""})
    assert empty.context["form"].errors == {"reason": ["This field is required."]}
    response = client.post(url, {"reason": "Wrong patient"}, follow=True)
    allocation.refresh_from_db()
    assert allocation.status == "in_error"
    assert "Wrong patient" in response.content.decode()
    assert Allocation.objects.count() == 1


def test_the_participant_page_leads_to_randomization_then_shows_the_arm(
    ready_a, coordinator_a, monitor, client_for
):
    page_url = reverse("enrollment:participant_detail", args=[ready_a.study_number])
    randomize_url = reverse("arms:randomize", args=[ready_a.study_number])
    assert randomize_url in client_for(coordinator_a).get(page_url).content.decode()
    # A monitor reads the page but gets no button to press.
    assert randomize_url not in client_for(monitor).get(page_url).content.decode()
    allocation = services.participant_randomize(
        participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    body = client_for(coordinator_a).get(page_url).content.decode()
    assert f"{allocation.arm.code} – {allocation.arm.name}" in body
    assert randomize_url not in body
    assert reverse("dosing:participant_timeline", args=[ready_a.study_number]) in body
