"""The allocation notice, through the broker, in a real worker process."""

import uuid

import pytest
from django.conf import settings

from arms import services
from arms.models import AllocationNotice, NoticeStatus
from enrollment.models import Participant
from tests.conftest import wait_for
from tests.factories import active_randomization_list, ready_participant

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker_mail(child_env, tmp_path, request):
    """The worker writes its e-mails as files here (requested before the worker starts)."""
    if settings.REDIS_URL:
        request.getfixturevalue("redis_broker")
    folder = tmp_path / "mail"
    child_env["EMAIL_BACKEND"] = "django.core.mail.backends.filebased.EmailBackend"
    child_env["EMAIL_FILE_PATH"] = str(folder)
    return folder


def test_the_investigators_are_emailed_once_after_the_commit(
    worker_mail,
    celery_worker_process,
    protocol,
    site_a,
    site_b,
    administrator,
    coordinator_a,
    investigator_a,
):
    active_randomization_list(administrator=administrator, per_stratum=10)
    participant = ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)
    allocation = services.participant_randomize(
        participant=participant, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    notice = AllocationNotice.objects.get(allocation=allocation)
    assert wait_for(
        lambda: AllocationNotice.objects.get(pk=notice.pk).status == NoticeStatus.SENT
    ), (celery_worker_process.args, "the worker did not send the notice within 60 s")
    files = list(worker_mail.glob("*.log"))
    assert len(files) == 1
    text = files[0].read_text()
    assert f"Randomized: {participant.study_number} to {allocation.arm.code}" in text
    assert f"To: {investigator_a.email}" in text
    identified = Participant.objects.get(pk=participant.pk)
    assert identified.name not in text and identified.mrn not in text
    assert AllocationNotice.objects.get(pk=notice.pk).attempts == 1
