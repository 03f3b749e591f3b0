"""Thin tasks: the beat sends "go and look" every minute; the rows are the schedule.

No reminder is ever an ETA or countdown task: with Redis, the visibility timeout would
redeliver those, and a lost message would lose the reminder.
"""

from celery import shared_task

from . import services


@shared_task(name="dosing.tasks.reminders_dispatch", bind=True, acks_late=True, ignore_result=True)
def reminders_dispatch(self) -> dict:
    """Mark overdue doses, then send the due reminders. Idempotent: every row is claimed
    before it is sent, so a redelivered or duplicated run sends nothing twice."""
    overdue = services.doses_mark_overdue()
    result = services.reminders_dispatch(worker=self.request.hostname or "worker")
    return {
        "overdue": overdue,
        "sent": result.sent,
        "retrying": result.retrying,
        "failed": result.failed,
        "recovered": result.recovered,
    }
