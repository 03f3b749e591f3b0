"""Thin tasks: they take ids and call a service that claims its row first."""

from celery import shared_task

from . import services


@shared_task(name="arms.tasks.allocation_notify", ignore_result=True)
def allocation_notify(notice_id: int) -> None:
    """E-mails the site's investigators about one allocation; sends once however often it
    is delivered. A failure is retried by the sweep, from the row, not by a countdown
    message waiting in the broker."""
    services.allocation_notice_send(notice_id=notice_id)


@shared_task(name="arms.tasks.allocation_notices_sweep", ignore_result=True)
def allocation_notices_sweep() -> None:
    services.allocation_notices_sweep()


@shared_task(name="arms.tasks.stratum_exhausted_notify", ignore_result=True)
def stratum_exhausted_notify(stratum_id: int) -> None:
    services.stratum_exhausted_email(stratum_id=stratum_id)
