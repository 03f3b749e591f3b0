"""The visits sweep through the broker, in a real worker process: closed windows become
missed, and a due visit reminder is e-mailed once to the site's coordinators."""

from datetime import datetime, time, timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from outcomes.models import ScheduledVisit, VisitReminder, VisitReminderStatus, VisitStatus
from outcomes.tasks import visits_sweep
from tests.conftest import wait_for
from tests.outcomes.visit_helpers import randomized

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


def test_the_sweep_marks_missed_visits_and_sends_a_due_reminder_once(
    worker_mail,
    celery_worker_process,
    protocol,
    site_a,
    coordinator_a,
    investigator_a,
    administrator,
):
    today = timezone.localdate(timezone=site_a.zone)
    allocation = randomized(
        site=site_a,
        coordinator=coordinator_a,
        investigator=investigator_a,
        administrator=administrator,
        at=datetime.combine(today - timedelta(days=2), time(10, 0), tzinfo=site_a.zone),
    )
    visits = ScheduledVisit.objects.filter(participant=allocation.participant)
    # The day-4 reminder is due tomorrow morning; bring it to now (delivery state, not trial
    # data), so the worker has exactly one to send whatever the hour of the run.
    reminder = VisitReminder.objects.get(scheduled_visit__definition__code="D4")
    VisitReminder.objects.filter(pk=reminder.pk).update(
        due_at=timezone.now() - timedelta(minutes=1)
    )

    visits_sweep.delay()
    visits_sweep.delay()  # a duplicated beat tick: nothing twice

    def reminder_mail() -> str:
        # The folder also holds the allocation's notice to the investigators: the visit
        # reminders are the messages carrying their header.
        messages = [p.read_text() for p in worker_mail.glob("*.log")]
        return "".join(m for m in messages if "X-Visit-Reminder-Id" in m)

    def swept():
        # The row is claimed (sent, with its time) before the message is written: wait for both.
        sent = VisitReminder.objects.get(pk=reminder.pk).status == VisitReminderStatus.SENT
        missed = set(visits.filter(status=VisitStatus.MISSED).values_list("study_day", flat=True))
        return (
            sent and missed == {0, 1} and f"X-Visit-Reminder-Id: {reminder.pk}" in reminder_mail()
        )

    assert wait_for(swept), (celery_worker_process.args, "the worker did not sweep within 60 s")
    text = reminder_mail()
    assert text.count(f"X-Visit-Reminder-Id: {reminder.pk}") == 1
    assert f"To: {coordinator_a.email}" in text
    assert investigator_a.email not in text
    assert f"Visit D4 (day 4) from {today + timedelta(days=2)}" in text
    assert allocation.participant.name not in text
    # The closed windows were missed, not their reminders sent: D1's was cancelled with it.
    d1 = VisitReminder.objects.get(scheduled_visit__definition__code="D1")
    assert d1.status == VisitReminderStatus.CANCELLED
