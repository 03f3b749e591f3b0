"""Thin tasks: the beat says "go and look"; the rows are the schedule."""

from celery import shared_task

from . import services

# --- Visits ---


@shared_task(name="outcomes.tasks.visits_sweep", acks_late=True, ignore_result=True)
def visits_sweep() -> dict:
    """Mark the visits whose window has closed as missed, then send the due visit reminders.
    Idempotent: a visit is marked under its lock, a reminder claimed before it is sent."""
    missed = services.visits_mark_missed()
    sent = services.visit_reminders_dispatch()
    return {"missed": missed, "reminders_sent": sent}


# --- Adverse events and end of study ---


@shared_task(
    name="outcomes.tasks.sae_alerts_dispatch", bind=True, acks_late=True, ignore_result=True
)
def sae_alerts_dispatch(self) -> dict:
    """Send the due SAE alerts. Idempotent: every row is claimed before it is sent, so a
    redelivered or duplicated run sends nothing twice."""
    result = services.sae_alerts_dispatch(worker=self.request.hostname or "worker")
    return {"sent": result.sent, "retrying": result.retrying, "failed": result.failed}
