"""A real Celery worker, in its own process, on the configured broker (filesystem or Redis)."""

import uuid

import pytest
from django.conf import settings

from tests.conftest import wait_for
from trialsite.core.models import WorkerHeartbeat
from trialsite.core.tasks import heartbeat

pytestmark = pytest.mark.worker


@pytest.fixture
def broker_for_this_run(request):
    """With REDIS_URL set, the broker is Redis and must answer; else the filesystem transport."""
    if settings.REDIS_URL:
        request.getfixturevalue("redis_broker")


def test_a_task_sent_through_the_broker_runs_in_a_real_worker(
    broker_for_this_run, celery_worker_process
):
    name = f"test-{uuid.uuid4().hex[:8]}"
    heartbeat.delay(name)
    assert wait_for(lambda: WorkerHeartbeat.objects.filter(name=name).exists()), (
        "the worker did not run the task within 60 s"
    )
