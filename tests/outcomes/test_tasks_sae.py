"""SAE alerts through a real Celery worker on the configured broker, read from the worker's
own mail files: a serious adverse event produces exactly one immediate alert and, 24 hours
later, exactly one follow-up, unless its report was recorded first. The beat is simulated by
sending the dispatch task, as the beat does every minute; 24 hours pass by moving the
follow-up rows' send time, as the dosing worker tests move their reminders."""

import datetime
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from django.utils import timezone

from outcomes.models import AlertKind, AlertStatus, SaeAlert
from outcomes.services import adverse_event_record, sae_report_mark
from outcomes.tasks import sae_alerts_dispatch
from tests.conftest import ROOT, service_missing, wait_for, worker_command
from tests.outcomes.ae_helpers import randomized_to
from trialsite.celery import app
from trialsite.core.clock import site_today

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TASK = "outcomes.tasks.sae_alerts_dispatch"


def mailed(folder: Path) -> Counter:
    """(alert id, kind) -> how many times it went out, from the worker's mail files."""
    counts: Counter = Counter()
    for path in folder.glob("*.log") if folder.exists() else []:
        text = path.read_text()
        ids = re.findall(r"^X-SAE-Alert-Id: (\d+)$", text, re.M)
        kinds = re.findall(r"^X-SAE-Alert-Kind: (\w+)$", text, re.M)
        counts.update(zip((int(i) for i in ids), kinds, strict=True))
    return counts


@pytest.fixture
def worker(child_env, tmp_path, request):
    if app.conf.broker_url.startswith("redis"):
        request.getfixturevalue("redis_broker")
    with app.connection_for_write() as conn:
        app.control.purge(connection=conn)
    log_path, mail = tmp_path / "worker.log", tmp_path / "mail"
    env = dict(child_env)
    env.update(
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(mail),
        SITE_URL="https://ctms.test",
    )
    with open(log_path, "a") as log:
        proc = subprocess.Popen(
            worker_command("sae"), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    if not wait_for(lambda: "ready." in log_path.read_text(), timeout=30):
        proc.kill()
        service_missing("worker", log_path.read_text()[-2000:])

    def finished() -> int:
        return len(re.findall(rf"Task {re.escape(TASK)}\[[^\]]+\] succeeded", log_path.read_text()))

    yield mail, finished, log_path
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _serious_event(participant, user, term):
    return adverse_event_record(
        participant=participant,
        user=user,
        term=term,
        onset_date=site_today(participant.site),
        end_date=None,
        grade=3,
        death_date=None,
        serious=True,
        criteria={"hospitalisation"},
        action_taken="none",
        outcome="not_recovered",
    )


def _ticks(n: int, finished, log_path, done_before: int) -> None:
    for _ in range(n):
        sae_alerts_dispatch.delay()
    assert wait_for(lambda: finished() == done_before + n), log_path.read_text()[-3000:]


def test_a_serious_event_alerts_once_now_and_once_at_24_hours_unless_reported_first(
    worker, protocol, site_a, coordinator_a, investigator_a, administrator
):
    mail, finished, log_path = worker
    at = timezone.now() - datetime.timedelta(hours=2)
    people = {"site": site_a, "coordinator": coordinator_a, "investigator": investigator_a}
    late = randomized_to("MSC", administrator=administrator, at=at, **people).participant
    prompt = randomized_to("PAX", administrator=administrator, at=at, **people).participant
    unreported = _serious_event(late, coordinator_a, "Pneumonia")
    reported = _serious_event(prompt, coordinator_a, "Pulmonary embolism")
    alerts = {
        (a.adverse_event_id, a.kind): a.pk
        for a in SaeAlert.objects.filter(adverse_event__in=[unreported, reported])
    }

    _ticks(3, finished, log_path, 0)  # three beat ticks, or one delivered three times
    assert mailed(mail) == Counter(
        {
            (alerts[unreported.pk, AlertKind.IMMEDIATE], "immediate"): 1,
            (alerts[reported.pk, AlertKind.IMMEDIATE], "immediate"): 1,
        }
    )
    text = "".join(p.read_text() for p in mail.glob("*.log"))
    assert late.study_number in text and late.name not in text and late.mrn not in text
    assert "https://ctms.test/outcomes/participants/" in text

    sae_report_mark(adverse_event=reported, user=coordinator_a, reported_on=site_today(site_a))
    # 24 hours pass: both follow-ups come due.
    SaeAlert.objects.filter(kind=AlertKind.FOLLOW_UP).update(
        due_at=timezone.now() - datetime.timedelta(seconds=5)
    )
    _ticks(3, finished, log_path, 3)
    assert mailed(mail) == Counter(
        {
            (alerts[unreported.pk, AlertKind.IMMEDIATE], "immediate"): 1,
            (alerts[reported.pk, AlertKind.IMMEDIATE], "immediate"): 1,
            (alerts[unreported.pk, AlertKind.FOLLOW_UP], "follow_up"): 1,
        }
    )
    statuses = dict(SaeAlert.objects.values_list("pk", "status"))
    assert statuses[alerts[reported.pk, AlertKind.FOLLOW_UP]] == AlertStatus.CANCELLED
    assert statuses[alerts[unreported.pk, AlertKind.FOLLOW_UP]] == AlertStatus.SENT


def test_the_sae_dispatcher_is_on_the_beat_every_minute():
    entry = app.conf.beat_schedule["outcomes-sae-alerts"]
    assert (entry["task"], entry["schedule"]) == (TASK, 60.0)
    assert sae_alerts_dispatch.acks_late is True
