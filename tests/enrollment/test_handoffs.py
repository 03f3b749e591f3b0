"""The hand-offs between roles: a screening that waits for an investigator's sign-off reaches
the site's investigators (their home page, one e-mail), and a signed one reaches the
coordinator as ready to randomize."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from enrollment import services
from enrollment.models import (
    Decision,
    Screening,
    SignoffNotice,
    SignoffNoticeStatus,
)
from enrollment.tasks import signoff_notices_sweep
from tests.conftest import verified_login
from tests.enrollment.conftest import MRN, NAME, eligible_answers
from tests.factories import PASSWORD, ParticipantFactory, ready_participant, user_with_role
from trialsite.celery import app
from trialsite.core.audit import audited_save
from trialsite.core.clock import site_today
from trialsite.core.models import Role, UserPreference
from trialsite.core.services import site_update

SIGNOFF_SUBJECT = "Eligibility to sign off: SHE-0001"


def screen(participant, user, **changes) -> Screening:
    return services.participant_screen(
        participant=participant, user=user, answers=eligible_answers(participant.site, **changes)
    )


def consent(participant, user, version):
    return services.consent_record(
        participant=participant,
        user=user,
        version=version,
        consented_at=timezone.now() - timedelta(minutes=5),
        signer="participant",
        copy_given=True,
    )


def home(client, role: str) -> str:
    return client.get(reverse("role_home", args=[role])).content.decode()


def queue(page: str) -> str:
    return page.split('data-testid="signoffs-awaited"')[1].split("</section>")[0]


def ready(page: str) -> str:
    return page.split('data-testid="ready-to-randomize"')[1].split("</section>")[0]


@pytest.fixture
def investigator_b(site_b):
    return user_with_role(Role.INVESTIGATOR, site_b, username="bianca")


# --- The notice ----------------------------------------------------------------------------------


def test_only_an_eligible_screening_waiting_for_sign_off_writes_a_notice(
    participant_a, coordinator_a
):
    ineligible = screen(participant_a, coordinator_a, E3=True)
    incomplete = screen(participant_a, coordinator_a, E9=None)
    assert (ineligible.decision, incomplete.decision) == (Decision.INELIGIBLE, Decision.INCOMPLETE)
    assert SignoffNotice.objects.count() == 0

    eligible = screen(participant_a, coordinator_a)
    assert list(SignoffNotice.objects.values_list("screening", "status")) == [
        (eligible.pk, SignoffNoticeStatus.PENDING)
    ]


def test_a_new_eligible_screening_before_sign_off_asks_again_and_only_it_is_sent(
    participant_a, coordinator_a, investigator_a, mailoutbox
):
    """Each screening is signed on its own, so a re-screening that waits again writes its own
    notice; the earlier one, superseded before it went out, asks for nothing."""
    first = screen(participant_a, coordinator_a)
    second = screen(participant_a, coordinator_a, respiratory_rate=32)
    assert SignoffNotice.objects.filter(screening__in=[first, second]).count() == 2

    assert services.signoff_notices_sweep() == 1
    statuses = dict(SignoffNotice.objects.values_list("screening", "status"))
    assert statuses == {
        first.pk: SignoffNoticeStatus.NOT_NEEDED,
        second.pk: SignoffNoticeStatus.SENT,
    }
    assert [m.subject for m in mailoutbox] == [SIGNOFF_SUBJECT]


def test_the_sweep_sends_one_email_to_the_sites_investigators_only_without_name_or_mrn(
    participant_a, coordinator_a, investigator_a, investigator_b, site_a, settings, mailoutbox
):
    settings.SITE_URL = "https://trial.example.org/"
    user_with_role(Role.INVESTIGATOR, site_a, username="gone", is_active=False)
    user_with_role(Role.INVESTIGATOR, site_a, username="nomail", email="")
    screening = screen(participant_a, coordinator_a)

    assert services.signoff_notices_sweep() == 1
    assert services.signoff_notices_sweep() == 0  # sent once
    assert [(m.subject, m.to) for m in mailoutbox] == [(SIGNOFF_SUBJECT, [investigator_a.email])]
    body = mailoutbox[0].body
    assert body == (
        f"SHE-0001 was screened eligible on {screening.screening_date.isoformat()} at SHE and "
        "waits for an investigator's sign-off before randomization.\n\n"
        "https://trial.example.org/participants/SHE-0001/sign-off/"
    )
    for secret in (NAME, MRN):
        assert secret not in body and secret not in mailoutbox[0].subject
    notice = SignoffNotice.objects.get(screening=screening)
    assert (notice.status, notice.attempts, notice.recipients) == (
        SignoffNoticeStatus.SENT,
        1,
        investigator_a.email,
    )


def test_each_investigator_reads_the_notice_in_their_language(
    participant_a, coordinator_a, investigator_a, site_a, administrator, mailoutbox
):
    site_update(site=site_a, user=administrator, reason="Works in Chinese", language="zh-hans")
    english_reader = user_with_role(Role.INVESTIGATOR, site_a, username="eve")
    audited_save(UserPreference(user=english_reader, language="en"), user=english_reader)
    screen(participant_a, coordinator_a)

    assert services.signoff_notices_sweep() == 1
    by_reader = {tuple(m.to): m.subject for m in mailoutbox}
    assert by_reader == {
        (investigator_a.email,): "待签字确认入组资格：SHE-0001",
        (english_reader.email,): SIGNOFF_SUBJECT,
    }


def test_a_screening_signed_before_the_sweep_sends_nothing(
    participant_a, coordinator_a, investigator_a, mailoutbox
):
    screening = screen(participant_a, coordinator_a)
    services.eligibility_signoff(participant=participant_a, user=investigator_a, password=PASSWORD)
    assert services.signoff_notices_sweep() == 0
    assert mailoutbox == []
    assert SignoffNotice.objects.get(screening=screening).status == SignoffNoticeStatus.NOT_NEEDED


def test_a_notice_left_sending_by_a_dead_worker_is_sent_after_the_lease(
    participant_a, coordinator_a, investigator_a, mailoutbox
):
    screening = screen(participant_a, coordinator_a)
    claimed = timezone.now()
    SignoffNotice.objects.filter(screening=screening).update(
        status=SignoffNoticeStatus.SENDING, claimed_at=claimed, attempts=1
    )
    assert services.signoff_notices_sweep(now=claimed + timedelta(minutes=9)) == 0
    assert services.signoff_notices_sweep(now=claimed + timedelta(minutes=11)) == 1
    notice = SignoffNotice.objects.get(screening=screening)
    assert (notice.status, notice.attempts, len(mailoutbox)) == (SignoffNoticeStatus.SENT, 2, 1)


def test_a_failing_send_is_retried_by_the_sweep_and_ends_failed(
    participant_a, coordinator_a, investigator_a, settings
):
    screening = screen(participant_a, coordinator_a)
    settings.EMAIL_BACKEND = "tests.arms.test_notices.RefusingBackend"
    for attempt in range(1, services.NOTICE_MAX_ATTEMPTS + 1):
        services.signoff_notices_sweep()
        assert SignoffNotice.objects.get(screening=screening).attempts == attempt
    notice = SignoffNotice.objects.get(screening=screening)
    assert (notice.status, notice.last_error) == (
        SignoffNoticeStatus.FAILED,
        "SMTP server refused the message",
    )
    assert services.signoff_notices_sweep() == 0


def test_the_beat_sweeps_the_sign_off_notices_every_minute():
    entry = app.conf.beat_schedule["signoff-notices"]
    assert (entry["task"], entry["schedule"]) == ("enrollment.tasks.signoff_notices_sweep", 60.0)
    assert signoff_notices_sweep.name == entry["task"]


# --- The home pages ------------------------------------------------------------------------------


def test_the_investigator_signs_from_the_queue_and_the_coordinator_sees_ready_to_randomize(
    client,
    participant_a,
    coordinator_a,
    investigator_a,
    investigator_b,
    coordinator_b,
    consent_version,
):
    consent(participant_a, coordinator_a, consent_version)
    screening = screen(participant_a, coordinator_a)
    signoff_url = reverse("enrollment:eligibility_signoff", args=["SHE-0001"])
    randomize_url = reverse("arms:randomize", args=["SHE-0001"])

    verified_login(client, investigator_a)
    awaited = queue(home(client, Role.INVESTIGATOR))
    assert f'<a class="study-number" href="{signoff_url}">SHE-0001</a>' in awaited
    assert f'<td data-label="Date of screening">{screening.screening_date.isoformat()}</td>' in (
        awaited
    )
    assert '<td data-label="Screened by">' + coordinator_a.get_full_name() in awaited
    assert NAME not in awaited
    verified_login(client, investigator_b)
    assert "SHE-0001" not in queue(home(client, Role.INVESTIGATOR))
    verified_login(client, coordinator_a)
    assert "SHE-0001" not in ready(home(client, Role.COORDINATOR))

    verified_login(client, investigator_a)
    response = client.post(signoff_url, {"password": PASSWORD}, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["Eligibility signed off."]
    awaited = queue(home(client, Role.INVESTIGATOR))
    assert "SHE-0001" not in awaited
    assert "No screening is waiting for your sign-off." in awaited

    verified_login(client, coordinator_a)
    listed = ready(home(client, Role.COORDINATOR))
    assert f'href="{randomize_url}">Randomize</a>' in listed
    assert ">SHE-0001</a>" in listed
    verified_login(client, coordinator_b)
    assert "SHE-0001" not in ready(home(client, Role.COORDINATOR))
    assert "Nobody is ready to randomize." in ready(home(client, Role.COORDINATOR))


def test_a_participant_held_at_the_gate_is_not_ready_to_randomize(
    client, participant_a, coordinator_a, investigator_a, consent_version
):
    """Signed off but without consent on the current version: the gate, not the sign-off
    alone, decides."""
    screen(participant_a, coordinator_a)
    services.eligibility_signoff(participant=participant_a, user=investigator_a, password=PASSWORD)
    verified_login(client, coordinator_a)
    assert "SHE-0001" not in ready(home(client, Role.COORDINATOR))
    consent(participant_a, coordinator_a, consent_version)
    assert "SHE-0001" in ready(home(client, Role.COORDINATOR))


def _add(protocol, site, coordinator, investigator, count: int) -> None:
    """`count` participants whose eligible screening waits for its sign-off, and `count`
    ready to randomize."""
    for _number in range(count):
        audited_save(
            Screening(
                participant=ParticipantFactory(site=site, user=coordinator),
                protocol=protocol,
                screened_by=coordinator,
                screening_date=site_today(site),
                answers={"severity": "severe", "weight_kg": "70", "egfr": "90"},
                decision=Decision.ELIGIBLE,
                results=[{"code": "I2", "outcome": "met", "reason": "severe"}],
            ),
            user=coordinator,
        )
        ready_participant(site=site, user=coordinator, investigator=investigator)


HOMES = {Role.INVESTIGATOR: "signoffs-awaited", Role.COORDINATOR: "ready-to-randomize"}


def _rows(response, role: str) -> int:
    page = response.content.decode()
    return (
        page.split(f'data-testid="{HOMES[role]}"')[1]
        .split("</section>")[0]
        .count('class="study-number"')
    )


def test_the_home_queues_cost_as_many_queries_for_30_participants_as_for_3(
    client_for, protocol, site_a, coordinator_a, investigator_a, django_assert_max_num_queries
):
    users = {Role.INVESTIGATOR: investigator_a, Role.COORDINATOR: coordinator_a}
    _add(protocol, site_a, coordinator_a, investigator_a, 3)
    pinned = {}
    for role, user in users.items():
        client = client_for(user)
        with CaptureQueriesContext(connection) as captured:
            response = client.get(reverse("role_home", args=[role]))
        assert _rows(response, role) == 3
        pinned[role] = len(captured)

    _add(protocol, site_a, coordinator_a, investigator_a, 27)
    for role, user in users.items():
        client = client_for(user)
        with django_assert_max_num_queries(pinned[role]):
            response = client.get(reverse("role_home", args=[role]))
        assert _rows(response, role) == 30
