from celery import shared_task
from django.utils import timezone

from .models import WorkerHeartbeat


@shared_task(name="trialsite.core.tasks.heartbeat", ignore_result=True)
def heartbeat(name: str = "worker") -> None:
    """Record that a worker ran. Idempotent: it only moves a timestamp forward."""
    WorkerHeartbeat.objects.update_or_create(name=name, defaults={"last_seen": timezone.now()})
