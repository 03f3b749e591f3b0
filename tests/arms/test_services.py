"""Lists, allocation, marking in error, notices: the services against the database."""

import uuid
from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from arms import rules, selectors, services
from arms.models import (
    Allocation,
    AllocationNotice,
    AllocationStatus,
    ListEntry,
    ListSource,
    ListStatus,
    NoticeStatus,
    RandomizationList,
    Stratum,
)
from enrollment.models import Screening
from enrollment.services import eligibility_signoff
from tests.factories import PASSWORD, ready_participant
from trialsite.core.audit import audited_save
from trialsite.core.clock import site_today

pytestmark = pytest.mark.django_db


# --- Generation and upload ------------------------------------------------------------------------


def test_generation_stores_every_stratum_of_the_protocol_in_complete_blocks(
    protocol, site_a, site_b, administrator
):
    randomization_list = services.randomization_list_generate(user=administrator, per_stratum=20)
    assert randomization_list.source == ListSource.GENERATED
    assert randomization_list.status == ListStatus.DRAFT
    assert sorted(randomization_list.strata.values_list("code", flat=True)) == [
        "SHE-critical",
        "SHE-severe",
        "WUH-critical",
        "WUH-severe",
    ]
    reports = selectors.list_report(randomization_list)
    assert [r.problems for r in reports] == [[], [], [], []]
    assert all(20 <= r.entries <= 25 for r in reports)
    assert ListEntry.objects.count() == sum(r.entries for r in reports)


def test_a_generated_list_is_one_audit_event_with_its_counts_and_hash(
    protocol, site_a, site_b, administrator, coordinator_a, investigator_a
):
    randomization_list = services.randomization_list_generate(user=administrator, per_stratum=20)
    count = ListEntry.objects.count()
    written = rules.list_sha256(selectors.list_entries(randomization_list))
    assert randomization_list.written_sha256 == written
    (event,) = randomization_list.history.all()
    assert (event.history_type, event.history_user, event.history_change_reason) == (
        "+",
        administrator,
        f"Generated: {count} entries in 4 strata, SHA-256 {written[:12]}…",
    )
    assert event.written_sha256 == written
    assert not ListEntry.history.exists()
    # Locking hashes the same text: an untouched draft keeps its hash.
    randomization_list = services.randomization_list_activate(
        user=administrator, randomization_list=randomization_list
    )
    participant = ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)
    services.participant_randomize(
        participant=participant, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    randomization_list.refresh_from_db()
    assert randomization_list.sha256 == written


def test_a_list_is_stored_once_per_key(protocol, site_a, site_b, administrator):
    key = uuid.uuid4()
    first = services.randomization_list_generate(
        user=administrator, per_stratum=6, idempotency_key=key
    )
    entries = ListEntry.objects.count()
    for again in (
        lambda: services.randomization_list_generate(
            user=administrator, per_stratum=9, idempotency_key=key
        ),
        lambda: services.randomization_list_upload(
            user=administrator,
            csv_text=rules.canonical_text(selectors.list_entries(first)),
            idempotency_key=key,
        ),
    ):
        with pytest.raises(services.ListAlreadyStored) as exc:
            again()
        assert exc.value.randomization_list == first
        assert exc.value.messages == [
            f"This request was already received: it stored list {first.pk}, nothing more."
        ]
    assert RandomizationList.objects.get() == first
    assert ListEntry.objects.count() == entries


def test_an_uploaded_list_is_one_audit_event(protocol, site_a, site_b, administrator):
    generated = services.randomization_list_generate(user=administrator, per_stratum=6)
    text = rules.canonical_text(selectors.list_entries(generated))
    uploaded = services.randomization_list_upload(user=administrator, csv_text=text)
    (event,) = uploaded.history.all()
    sha = rules.list_sha256(selectors.list_entries(uploaded))
    assert uploaded.written_sha256 == generated.written_sha256 == sha
    assert event.history_change_reason == (
        f"Uploaded: {text.count(chr(10)) - 1} entries in 4 strata, SHA-256 {sha[:12]}…"
    )
    assert not ListEntry.history.exists()


def test_two_generated_lists_differ(protocol, site_a, site_b, administrator):
    first = services.randomization_list_generate(user=administrator, per_stratum=30)
    second = services.randomization_list_generate(user=administrator, per_stratum=30)
    assert selectors.list_entries(first) != selectors.list_entries(second)


@pytest.mark.parametrize("role", ["coordinator_a", "investigator_a", "data_manager", "monitor"])
def test_only_the_administrator_generates_a_list(cast, protocol, role):
    with pytest.raises(ValidationError) as exc:
        services.randomization_list_generate(user=cast[role], per_stratum=10)
    assert exc.value.messages == ["Only the trial administrator manages randomization lists."]
    assert not RandomizationList.objects.exists()


def test_an_uploaded_list_with_errors_is_rejected_whole(protocol, site_a, site_b, administrator):
    text = "stratum,sequence,arm,block,block_size\nSHE-severe,1,STD,1,3\nSHE-severe,1,ZZZ,1,3\n"
    with pytest.raises(ValidationError) as exc:
        services.randomization_list_upload(user=administrator, csv_text=text)
    assert exc.value.message_dict["file"] == [
        "Line 3: unknown arm 'ZZZ'; sequence 1 of stratum SHE-severe is already on line 2.",
        "Stratum SHE-critical has no entries.",
        "Stratum WUH-severe has no entries.",
        "Stratum WUH-critical has no entries.",
    ]
    assert not RandomizationList.objects.exists()
    assert not ListEntry.objects.exists()


def test_an_uploaded_list_must_also_pass_the_block_checks(protocol, site_a, administrator):
    rows = ["stratum,sequence,arm,block,block_size"]
    for stratum in ("SHE-severe", "SHE-critical"):
        rows += [f"{stratum},1,STD,1,3", f"{stratum},2,STD,1,3", f"{stratum},3,MSC,1,3"]
    with pytest.raises(ValidationError) as exc:
        services.randomization_list_upload(user=administrator, csv_text="\n".join(rows))
    assert exc.value.message_dict["file"] == [
        "SHE-severe: Block 1 is not in the ratio: MSC 1, STD 2.",
        "SHE-critical: Block 1 is not in the ratio: MSC 1, STD 2.",
    ]


def test_a_valid_upload_is_stored_as_given(protocol, site_a, administrator):
    rows = ["stratum,sequence,arm,block,block_size"]
    for stratum in ("SHE-severe", "SHE-critical"):
        rows += [f"{stratum},1,PAX,1,3", f"{stratum},2,STD,1,3", f"{stratum},3,MSC,1,3"]
    randomization_list = services.randomization_list_upload(
        user=administrator, csv_text="\n".join(rows) + "\n"
    )
    assert randomization_list.source == ListSource.UPLOADED
    assert [(e.stratum, e.sequence, e.arm) for e in selectors.list_entries(randomization_list)] == [
        ("SHE-critical", 1, "PAX"),
        ("SHE-critical", 2, "STD"),
        ("SHE-critical", 3, "MSC"),
        ("SHE-severe", 1, "PAX"),
        ("SHE-severe", 2, "STD"),
        ("SHE-severe", 3, "MSC"),
    ]


def test_activating_a_list_retires_the_one_before(active_list, administrator):
    newer = services.randomization_list_generate(user=administrator, per_stratum=10)
    services.randomization_list_activate(user=administrator, randomization_list=newer)
    active_list.refresh_from_db()
    newer.refresh_from_db()
    assert (active_list.status, newer.status) == (ListStatus.RETIRED, ListStatus.ACTIVE)
    assert active_list.history.first().history_change_reason == f"Replaced by list {newer.pk}"


# --- Allocation ---------------------------------------------------------------------------------


def test_randomize_takes_the_first_entry_of_the_stratum_and_records_who_and_when(
    ready_a, active_list, coordinator_a
):
    key = uuid.uuid4()
    allocation = services.participant_randomize(
        participant=ready_a, user=coordinator_a, idempotency_key=key
    )
    first = ListEntry.objects.get(
        stratum__randomization_list=active_list, stratum__code="SHE-severe", sequence=1
    )
    assert allocation.entry == first
    assert allocation.arm == first.arm
    assert allocation.stratum.code == "SHE-severe"
    assert allocation.randomization_number == f"R{active_list.pk}-SHE-severe-0001"
    assert allocation.randomized_by == coordinator_a
    assert allocation.status == AllocationStatus.VALID
    assert AllocationNotice.objects.get(allocation=allocation).status == NoticeStatus.PENDING


def test_the_stratum_follows_the_latest_screening_severity(
    active_list, site_a, coordinator_a, investigator_a
):
    critical = ready_participant(
        site=site_a, user=coordinator_a, investigator=investigator_a, severity="critical"
    )
    allocation = services.participant_randomize(
        participant=critical, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    assert (allocation.stratum.code, allocation.entry.sequence) == ("SHE-critical", 1)


def test_the_same_key_returns_the_same_allocation_and_writes_nothing_more(ready_a, coordinator_a):
    key = uuid.uuid4()
    first = services.participant_randomize(
        participant=ready_a, user=coordinator_a, idempotency_key=key
    )
    again = services.participant_randomize(
        participant=ready_a, user=coordinator_a, idempotency_key=key
    )
    assert again.pk == first.pk
    assert Allocation.objects.count() == 1
    assert Allocation.history.count() == 1


def test_a_second_randomization_with_another_key_is_refused(ready_a, coordinator_a):
    first = services.participant_randomize(
        participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    with pytest.raises(services.AlreadyRandomized) as exc:
        services.participant_randomize(
            participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
        )
    assert exc.value.messages == [
        f"{ready_a.study_number} is already randomized ({first.randomization_number})."
    ]
    assert Allocation.objects.count() == 1


def test_the_gate_refuses_with_what_is_missing_and_writes_nothing(ready_a, coordinator_a):
    screening = Screening.objects.get(participant=ready_a)
    screening.decision = "ineligible"
    screening._change_reason = "test: an ineligible screening"
    screening.save()
    with pytest.raises(ValidationError) as exc:
        services.participant_randomize(
            participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
        )
    assert exc.value.messages == ["The latest screening is ineligible, not eligible."]
    assert not Allocation.objects.exists()


@pytest.mark.parametrize("role", ["coordinator_b", "data_manager", "monitor", "administrator"])
def test_only_the_participant_site_staff_randomize(cast, ready_a, role):
    with pytest.raises(ValidationError) as exc:
        services.participant_randomize(
            participant=ready_a, user=cast[role], idempotency_key=uuid.uuid4()
        )
    assert exc.value.messages == [
        "Only a coordinator or investigator of the participant's site can randomize."
    ]
    assert not Allocation.objects.exists()


def test_no_active_list_refuses(protocol, site_a, coordinator_a, investigator_a):
    participant = ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)
    with pytest.raises(ValidationError) as exc:
        services.participant_randomize(
            participant=participant, user=coordinator_a, idempotency_key=uuid.uuid4()
        )
    assert exc.value.messages == [
        "No randomization list is active. Ask the trial administrator to activate one."
    ]


def test_entries_are_used_in_sequence(active_list, site_a, coordinator_a, investigator_a):
    allocations = [
        services.participant_randomize(
            participant=ready_participant(
                site=site_a, user=coordinator_a, investigator=investigator_a
            ),
            user=coordinator_a,
            idempotency_key=uuid.uuid4(),
        )
        for _ in range(7)
    ]
    assert [a.entry.sequence for a in allocations] == [1, 2, 3, 4, 5, 6, 7]
    expected_arms = [
        e.arm for e in selectors.list_entries(active_list) if e.stratum == "SHE-severe"
    ][:7]
    assert [a.arm.code for a in allocations] == expected_arms


def test_the_list_is_locked_with_its_hash_at_the_first_allocation(
    ready_a, active_list, coordinator_a
):
    assert active_list.locked_at is None and active_list.sha256 == ""
    services.participant_randomize(
        participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    active_list.refresh_from_db()
    assert active_list.locked_at is not None
    assert active_list.sha256 == rules.list_sha256(selectors.list_entries(active_list))
    assert selectors.list_fingerprint(active_list).matches is True


def test_altering_a_locked_entry_shows_in_the_fingerprint(ready_a, active_list, coordinator_a):
    services.participant_randomize(
        participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    active_list.refresh_from_db()
    entry = ListEntry.objects.filter(stratum__randomization_list=active_list, sequence=5).first()
    entry.arm = active_list.protocol.arms.exclude(pk=entry.arm_id).first()
    entry._change_reason = "tampering, for the test"
    entry.save()
    fingerprint = selectors.list_fingerprint(active_list)
    assert fingerprint.recorded == active_list.sha256
    assert fingerprint.current != fingerprint.recorded
    assert fingerprint.matches is False


def test_an_exhausted_stratum_refuses_and_alerts_the_administrators_once(
    protocol,
    site_a,
    administrator,
    coordinator_a,
    investigator_a,
    django_capture_on_commit_callbacks,
):
    from tests.factories import active_randomization_list

    active_randomization_list(administrator=administrator, per_stratum=1)
    stratum = Stratum.objects.get(code="SHE-severe")
    size = stratum.entries.count()
    for _ in range(size):
        services.participant_randomize(
            participant=ready_participant(
                site=site_a, user=coordinator_a, investigator=investigator_a
            ),
            user=coordinator_a,
            idempotency_key=uuid.uuid4(),
        )
    late = [
        ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)
        for _ in range(2)
    ]
    enqueued = []
    for participant in late:
        with (
            django_capture_on_commit_callbacks(execute=False) as callbacks,
            pytest.raises(services.StratumExhausted) as exc,
        ):
            services.participant_randomize(
                participant=participant, user=coordinator_a, idempotency_key=uuid.uuid4()
            )
        enqueued.append(len(callbacks))
        assert exc.value.messages == [
            "The randomization list has no entry left for stratum SHE-severe. "
            "The trial administrator has been alerted; nobody was randomized."
        ]
    assert enqueued == [1, 0]  # the alert is enqueued once, on the first refusal
    assert not Allocation.objects.filter(participant__in=late).exists()
    stratum.refresh_from_db()
    assert stratum.exhausted_alert_at is not None
    assert services.stratum_exhausted_email(stratum_id=stratum.pk) == 1
    [alert] = mail.outbox
    assert (alert.subject, alert.to) == (
        "Randomization list exhausted: stratum SHE-severe",
        [administrator.email],
    )


def test_low_stock_under_ten_percent(
    protocol, site_a, administrator, coordinator_a, investigator_a
):
    from tests.factories import active_randomization_list

    randomization_list = active_randomization_list(administrator=administrator, per_stratum=10)
    stratum = randomization_list.strata.get(code="SHE-severe")
    total = stratum.entries.count()
    for _ in range(total - 1):
        services.participant_randomize(
            participant=ready_participant(
                site=site_a, user=coordinator_a, investigator=investigator_a
            ),
            user=coordinator_a,
            idempotency_key=uuid.uuid4(),
        )
    stock = selectors.stratum_stock(stratum)
    assert (stock.remaining, stock.low) == (1, True)


# --- In error -----------------------------------------------------------------------------------


def test_marking_in_error_keeps_the_allocation_with_the_reason(
    ready_a, coordinator_a, administrator
):
    allocation = services.participant_randomize(
        participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    services.allocation_mark_in_error(
        allocation=allocation, user=administrator, reason="Randomized the wrong patient"
    )
    allocation.refresh_from_db()
    assert allocation.status == AllocationStatus.IN_ERROR
    assert allocation.error_reason == "Randomized the wrong patient"
    assert allocation.marked_in_error_by == administrator
    assert allocation.history.first().history_change_reason == "Randomized the wrong patient"
    # Still counted, still holding its entry.
    report = selectors.balance_report(allocation.arm.protocol)
    assert report.overall.total == 1


def test_marking_in_error_needs_a_reason_and_the_administrator(
    ready_a, coordinator_a, administrator
):
    allocation = services.participant_randomize(
        participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    with pytest.raises(ValidationError) as exc:
        services.allocation_mark_in_error(allocation=allocation, user=administrator, reason="  ")
    assert exc.value.message_dict == {"reason": ["Say why this randomization is in error."]}
    with pytest.raises(ValidationError) as exc:
        services.allocation_mark_in_error(allocation=allocation, user=coordinator_a, reason="x")
    assert exc.value.messages == ["Only the trial administrator manages randomization lists."]
    allocation.refresh_from_db()
    assert allocation.status == AllocationStatus.VALID


def test_the_database_refuses_an_in_error_allocation_without_a_reason(ready_a, coordinator_a):
    from django.db import IntegrityError, transaction

    allocation = services.participant_randomize(
        participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    # save() without full_clean(): past the services' checks, to the database's.
    allocation.status = AllocationStatus.IN_ERROR
    allocation._change_reason = "test: in error, with no reason in its field"
    with pytest.raises(IntegrityError), transaction.atomic():
        allocation.save()


# --- The notice ---------------------------------------------------------------------------------


def test_the_notice_goes_to_the_site_investigators_with_study_number_and_arm_only(
    ready_a, coordinator_a, investigator_a, coordinator_b, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        allocation = services.participant_randomize(
            participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
        )
    assert len(callbacks) == 1  # the task is enqueued only when the transaction commits
    notice = allocation.notice
    assert services.allocation_notice_send(notice_id=notice.pk) is True
    assert services.allocation_notice_send(notice_id=notice.pk) is False  # sends once
    [message] = mail.outbox
    assert message.to == [investigator_a.email]
    assert message.subject == f"Randomized: {ready_a.study_number} to {allocation.arm.code}"
    assert allocation.randomization_number in message.body
    participant = type(ready_a).objects.get(pk=ready_a.pk)
    assert participant.name not in message.body + message.subject
    assert participant.mrn not in message.body + message.subject
    notice.refresh_from_db()
    assert (notice.status, notice.attempts, notice.recipients) == (
        NoticeStatus.SENT,
        1,
        investigator_a.email,
    )


def test_the_command_generates_and_reports_without_entries(protocol, site_a, administrator):
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command(
        "generate_randomization_list", per_stratum=9, user="adam", activate=True, stdout=out
    )
    randomization_list = RandomizationList.objects.get()
    lines = out.getvalue().splitlines()
    assert lines[0] == f"List {randomization_list.pk}: active"
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["SHE-severe", "SHE-critical"]
    assert all(line.endswith("; ok") for line in lines[1:])


def test_a_randomization_refused_by_the_dosing_hook_leaves_nothing(
    ready_a, active_list, coordinator_a, investigator_a
):
    """One transaction: no weight for a per-kg dose refuses the allocation too."""
    screening = Screening.objects.get(participant=ready_a)
    screening.answers = {"severity": "severe", "egfr": "90"}  # no weight
    audited_save(screening, user=coordinator_a, reason="test: no weight recorded")
    # The screening changed after its sign-off: signed again, as the gate asks.
    eligibility_signoff(participant=ready_a, user=investigator_a, password=PASSWORD)
    msc_first = (
        ListEntry.objects.filter(
            stratum__randomization_list=active_list, stratum__code="SHE-severe", arm__code="MSC"
        )
        .order_by("sequence")
        .first()
    )
    # Use the entries before the first MSC one, so this participant draws MSC.
    for _ in range(msc_first.sequence - 1):
        services.participant_randomize(
            participant=ready_participant(site=ready_a.site, user=coordinator_a),
            user=coordinator_a,
            idempotency_key=uuid.uuid4(),
        )
    before = (Allocation.objects.count(), AllocationNotice.objects.count())
    with pytest.raises(ValidationError) as exc:
        services.participant_randomize(
            participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
        )
    assert exc.value.message_dict == {
        "weight_kg": ["The dose is per kg body weight, and no screening weight is recorded."]
    }
    assert (Allocation.objects.count(), AllocationNotice.objects.count()) == before
    assert not Allocation.objects.filter(entry=msc_first).exists()


def test_the_screening_egfr_sets_the_nirmatrelvir_dose_through_randomization(
    active_list, site_a, coordinator_a, investigator_a
):
    from dosing.models import ScheduledDose

    pax_first = (
        ListEntry.objects.filter(
            stratum__randomization_list=active_list, stratum__code="SHE-severe", arm__code="PAX"
        )
        .order_by("sequence")
        .first()
    )
    for _ in range(pax_first.sequence - 1):
        services.participant_randomize(
            participant=ready_participant(site=site_a, user=coordinator_a),
            user=coordinator_a,
            idempotency_key=uuid.uuid4(),
        )
    participant = ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)
    screening = Screening.objects.get(participant=participant)
    screening.answers = {**screening.answers, "egfr": "45"}
    audited_save(screening, user=coordinator_a, reason="test: moderate renal impairment")
    eligibility_signoff(participant=participant, user=investigator_a, password=PASSWORD)
    allocation = services.participant_randomize(
        participant=participant, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    assert allocation.arm.code == "PAX"
    doses = ScheduledDose.objects.filter(participant=participant)
    assert doses.count() == 10
    assert {(d.planned_amount, d.amount_unit) for d in doses} == {
        (Decimal("150"), "mg nirmatrelvir")
    }


def test_a_participant_never_screened_is_refused_with_what_is_missing(
    active_list, site_a, coordinator_a
):
    from tests.factories import ParticipantFactory

    participant = ParticipantFactory(site=site_a, user=coordinator_a)
    with pytest.raises(ValidationError) as excinfo:
        services.participant_randomize(
            participant=participant, user=coordinator_a, idempotency_key=uuid.uuid4()
        )
    assert "No screening is recorded." in excinfo.value.messages
    assert not Allocation.objects.filter(participant=participant).exists()


def test_a_withdrawal_recorded_first_stops_the_randomization(ready_a, coordinator_a):
    from enrollment.services import withdrawal_record

    withdrawal_record(
        participant=ready_a,
        user=coordinator_a,
        scope="treatment",
        withdrawn_on=site_today(ready_a.site),
        reason="Family asked to stop",
    )
    with pytest.raises(ValidationError) as excinfo:
        services.participant_randomize(
            participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
        )
    assert any(m.startswith("Consent was withdrawn on") for m in excinfo.value.messages)
    assert not Allocation.objects.filter(participant=ready_a).exists()
