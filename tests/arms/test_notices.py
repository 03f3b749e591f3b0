"""Allocation notices are rows: a lost message or a failed send is recovered by the sweep."""

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from arms import services
from arms.models import Allocation, AllocationNotice, NoticeStatus

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True)  # a real commit, so the nudge is really published
def test_a_broker_down_at_commit_does_not_break_the_randomization_and_the_sweep_sends(
    dead_broker, ready_a, coordinator_a, investigator_a, client_for, mailoutbox
):
    client = client_for(coordinator_a)
    url = reverse("arms:randomize", args=[ready_a.study_number])
    key = client.get(url).context["form"]["idempotency_key"].value()
    response = client.post(url, {"idempotency_key": key})
    assert response.status_code == 302
    allocation = Allocation.objects.get(participant=ready_a)
    assert AllocationNotice.objects.get(allocation=allocation).status == NoticeStatus.PENDING
    assert mailoutbox == []

    assert services.allocation_notices_sweep() == 1
    assert [m.to for m in mailoutbox] == [[investigator_a.email]]
    assert services.allocation_notices_sweep() == 0  # sent once
    assert len(mailoutbox) == 1


def _allocated(ready_a, coordinator_a) -> AllocationNotice:
    allocation = services.participant_randomize(
        participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    return AllocationNotice.objects.get(allocation=allocation)


def test_a_notice_left_sending_by_a_dead_worker_is_sent_after_the_lease(
    ready_a, coordinator_a, investigator_a, mailoutbox
):
    notice = _allocated(ready_a, coordinator_a)
    claimed = timezone.now()
    AllocationNotice.objects.filter(pk=notice.pk).update(
        status=NoticeStatus.SENDING, claimed_at=claimed, attempts=1
    )
    assert services.allocation_notices_sweep(now=claimed + timedelta(minutes=9)) == 0
    assert services.allocation_notices_sweep(now=claimed + timedelta(minutes=11)) == 1
    notice.refresh_from_db()
    assert (notice.status, notice.attempts, len(mailoutbox)) == (NoticeStatus.SENT, 2, 1)


def test_a_failing_send_is_retried_by_the_sweep_and_ends_failed(
    ready_a, coordinator_a, investigator_a, settings
):
    notice = _allocated(ready_a, coordinator_a)
    settings.EMAIL_BACKEND = "tests.arms.test_notices.RefusingBackend"
    for attempt in range(1, services.NOTICE_MAX_ATTEMPTS + 1):
        services.allocation_notices_sweep()
        notice.refresh_from_db()
        assert notice.attempts == attempt
    assert notice.status == NoticeStatus.FAILED
    assert notice.last_error == "SMTP server refused the message"
    assert services.allocation_notices_sweep() == 0


class RefusingBackend:
    """The outside world failing: an SMTP server that refuses every message."""

    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("SMTP server refused the message")
