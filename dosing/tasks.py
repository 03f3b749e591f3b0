"""Thin tasks: the beat sends "go and look" every minute; the rows are the schedule.

No reminder is ever an ETA or countdown task: with Redis, the visibility timeout would
redeliver those, and a lost message would lose the reminder.

Delivery guarantees, and their one limit:
- Never lost: a reminder is a `dosing.Reminder` row in the database. A lost broker message,
  a restarted Redis or a dead worker loses only a "go and look"; the next tick (a minute
  later) finds every due row still `pending`.
- Never doubled by the system: each row is claimed (pending -> sending) by a conditional
  UPDATE before its message is built; two workers, a redelivered message (acks_late) or a
  duplicated tick find the row claimed and skip it. Finishing (sending -> sent) is
  conditional on the same claim token.
- The limit: a worker killed between handing the message to the mail server and marking the
  row sent leaves the row `sending`. After the claim lease (task hard time limit + 60 s) the
  next cycle puts it back and sends it again, counting it in `interrupted`. So at most one
  message per killed worker can arrive twice (each worker sends one message at a time), and
  the reminders page marks that row "interrupted once: may have arrived twice".
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
