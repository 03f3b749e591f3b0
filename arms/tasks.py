"""Thin tasks: they take ids and call a service that claims its row first."""

from celery import shared_task

from . import services


@shared_task(
    name="arms.tasks.allocation_notify",
    bind=True,
    ignore_result=True,
    max_retries=5,
    default_retry_delay=30,
)
def allocation_notify(self, notice_id: int) -> None:
    """E-mails the site's investigators about one allocation; sends once however often it
    is delivered."""
    try:
        services.allocation_notice_send(notice_id=notice_id)
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            services.allocation_notice_fail(notice_id=notice_id, error=str(exc))
            raise
        raise self.retry(exc=exc, countdown=30 * 2**self.request.retries) from exc


@shared_task(name="arms.tasks.stratum_exhausted_notify", ignore_result=True)
def stratum_exhausted_notify(stratum_id: int) -> None:
    services.stratum_exhausted_email(stratum_id=stratum_id)
