"""Sending Celery tasks from services."""

from django.db import transaction


def enqueue_on_commit(task, *args) -> None:
    """Send `task` once the current transaction commits.

    Robust: a broker that is down at that instant is logged, not raised into a request whose
    work has already committed. The task is only a nudge: the row written in the transaction
    is the work, and a periodic sweep finds whatever the nudge missed.
    """

    def publish():
        task.delay(*args)

    publish.__qualname__ = f"publish {task.name}"  # named in the log if it fails
    transaction.on_commit(publish, robust=True)
