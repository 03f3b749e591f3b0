"""Thin tasks: they call a service that claims its row first."""

from celery import shared_task

from . import services


@shared_task(name="enrollment.tasks.signoff_notices_sweep", ignore_result=True)
def signoff_notices_sweep() -> None:
    """E-mails the site's investigators about each screening waiting for their sign-off,
    from the notice rows: a lost message or a failed send loses nothing."""
    services.signoff_notices_sweep()
