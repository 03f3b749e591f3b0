"""Writes of randomization: lists, allocations, marking in error, the notices they send.

Each is keyword-only, one transaction, validated before it saves, and audited.
"""

from __future__ import annotations

import logging
import random
import secrets
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from enrollment.models import Participant
from enrollment.selectors import latest_screening, randomization_gate
from trialsite.core.access import access_for
from trialsite.core.audit import audited_save, unaudited_bulk_writes
from trialsite.core.languages import emails_by_language
from trialsite.core.models import Protocol, Role, RoleAssignment, Site
from trialsite.core.queue import enqueue_on_commit

from . import rules
from .models import (
    Allocation,
    AllocationNotice,
    AllocationStatus,
    Arm,
    ListAccessLog,
    ListEntry,
    ListSource,
    ListStatus,
    NoticeStatus,
    RandomizationList,
    Stratum,
)
from .selectors import list_entries, protocol_ratios, protocol_strata
from .signals import participant_allocated

logger = logging.getLogger(__name__)

RANDOMIZERS = (Role.COORDINATOR, Role.INVESTIGATOR)
MAX_PER_STRATUM = 10_000


class StratumExhausted(ValidationError):
    """Every entry of the participant's stratum is used: nobody more can be randomized in it
    until the administrator provides more."""

    def __init__(self, stratum: Stratum):
        self.stratum = stratum
        super().__init__(
            _(
                "The randomization list has no entry left for stratum %(stratum)s. "
                "The trial administrator has been alerted; nobody was randomized."
            )
            % {"stratum": stratum.code}
        )


class AlreadyRandomized(ValidationError):
    def __init__(self, allocation: Allocation):
        self.allocation = allocation
        super().__init__(
            _("%(study_number)s is already randomized (%(number)s).")
            % {
                "study_number": allocation.participant.study_number,
                "number": allocation.randomization_number,
            }
        )


def _require_administrator(user) -> None:
    if not access_for(user).has(Role.ADMINISTRATOR):
        raise ValidationError(_("Only the trial administrator manages randomization lists."))


# --- Lists ---------------------------------------------------------------------------------------


class ListAlreadyStored(ValidationError):
    """The form that asked for this list was already sent (a second click, a resent request):
    the list it stored then is the answer, and nothing more is stored."""

    def __init__(self, randomization_list: RandomizationList):
        self.randomization_list = randomization_list
        super().__init__(
            _("This request was already received: it stored list %(pk)s, nothing more.")
            % {"pk": randomization_list.pk}
        )


# Rows per INSERT; the database may cap it lower (SQLite: 999 parameters, so 199 entries).
ENTRY_BATCH_SIZE = 1000
# Why a list's entries are written without a history row each (see ListEntry).
LIST_ENTRIES_UNAUDITED = (
    "A list's entries: the list's own history row is their audit event (the number of "
    "entries and their SHA-256), nothing changes an entry afterwards, and each use of one is "
    "audited as its allocation."
)


def _refuse_repeat(idempotency_key: UUID | None) -> None:
    """Raises ListAlreadyStored when a list was already stored for this key."""
    if idempotency_key is None:
        return
    earlier = RandomizationList.objects.filter(idempotency_key=idempotency_key).first()
    if earlier is not None:
        raise ListAlreadyStored(earlier)


def _create_list(
    *,
    user,
    protocol: Protocol,
    source: str,
    entries: list[rules.Entry],
    per_stratum: int,
    note: str,
    idempotency_key: UUID | None,
) -> RandomizationList:
    """Stores the list, one stratum row per protocol stratum, and its entries: a constant
    number of queries plus one INSERT per batch of entries, and one audit event for the
    list (and one per stratum), never one per entry (see ListEntry)."""
    strata_keys = protocol_strata(protocol)
    written_sha256 = rules.list_sha256(entries)
    counts = {
        "entries": len(entries),
        "strata": len(strata_keys),
        # The audit trail's reason holds 100 characters: the whole hash is a field of the
        # same history record, and on the list's page.
        "sha": written_sha256[:12],
    }
    if source == ListSource.GENERATED:
        reason = _("Generated: %(entries)s entries in %(strata)s strata, SHA-256 %(sha)s…")
    else:
        reason = _("Uploaded: %(entries)s entries in %(strata)s strata, SHA-256 %(sha)s…")
    randomization_list = audited_save(
        RandomizationList(
            protocol=protocol,
            source=source,
            per_stratum=per_stratum,
            note=note.strip(),
            created_by=user,
            written_sha256=written_sha256,
            idempotency_key=idempotency_key,
        ),
        user=user,
        reason=reason % counts,
    )
    sites = {s.code: s for s in Site.objects.all()}
    stratum_ids = {}
    for key in strata_keys:
        stratum = Stratum(
            randomization_list=randomization_list,
            code=key.code,
            site=sites[key.site_code] if key.site_code else None,
            severity=key.severity,
        )
        stratum_ids[key.code] = audited_save(stratum, user=user).pk
    arm_ids = dict(Arm.objects.filter(protocol=protocol).values_list("code", "pk"))
    with unaudited_bulk_writes(LIST_ENTRIES_UNAUDITED):
        ListEntry.objects.bulk_create(
            [
                ListEntry(
                    stratum_id=stratum_ids[e.stratum],
                    sequence=e.sequence,
                    arm_id=arm_ids[e.arm],
                    block=e.block,
                    block_size=e.block_size,
                )
                for e in entries
            ],
            batch_size=ENTRY_BATCH_SIZE,
        )
    return randomization_list


def randomization_list_generate(
    *,
    user,
    per_stratum: int,
    note: str = "",
    protocol: Protocol | None = None,
    rng: random.Random | None = None,
    idempotency_key: UUID | None = None,
) -> RandomizationList:
    """A new draft list of complete permuted blocks, at least `per_stratum` entries in each
    stratum, drawn from the operating system's cryptographic source. Once per key: a second
    call with the same key stores nothing and raises ListAlreadyStored, naming the first."""
    _require_administrator(user)
    try:
        # On SQLite the IMMEDIATE transaction makes a concurrent request with the same key
        # wait here, then find the first list; on PostgreSQL the unique key refuses it.
        with transaction.atomic():
            _refuse_repeat(idempotency_key)
            protocol = protocol or Protocol.objects.get(is_current=True)
            if not 1 <= per_stratum <= MAX_PER_STRATUM:
                raise ValidationError(
                    {
                        "per_stratum": _("Give between 1 and %(max)s entries per stratum.")
                        % {"max": MAX_PER_STRATUM}
                    }
                )
            ratios = protocol_ratios(protocol)
            problems = rules.block_size_errors(ratios, protocol.block_sizes)
            if problems:
                raise ValidationError(problems)
            entries = rules.generate(
                strata=protocol_strata(protocol),
                ratios=ratios,
                block_sizes=protocol.block_sizes,
                per_stratum=per_stratum,
                rng=rng or secrets.SystemRandom(),
            )
            return _create_list(
                user=user,
                protocol=protocol,
                source=ListSource.GENERATED,
                entries=entries,
                per_stratum=per_stratum,
                note=note,
                idempotency_key=idempotency_key,
            )
    except IntegrityError:
        _refuse_repeat(idempotency_key)
        raise


def randomization_list_upload(
    *,
    user,
    csv_text: str,
    note: str = "",
    protocol: Protocol | None = None,
    idempotency_key: UUID | None = None,
) -> RandomizationList:
    """A statistician's list: all of it or none of it. Every error names its line; the
    blocks must also pass the report's checks (allowed sizes, exact ratio). Once per key,
    as a generated list."""
    _require_administrator(user)
    try:
        with transaction.atomic():
            _refuse_repeat(idempotency_key)
            protocol = protocol or Protocol.objects.get(is_current=True)
            ratios = protocol_ratios(protocol)
            strata = [k.code for k in protocol_strata(protocol)]
            entries, errors = rules.parse_list_csv(csv_text, arm_codes=ratios, stratum_codes=strata)
            if not errors:
                for report in rules.list_report(
                    entries, strata=strata, ratios=ratios, block_sizes=protocol.block_sizes
                ):
                    errors += [f"{report.stratum}: {p}" for p in report.problems]
            if errors:
                raise ValidationError({"file": errors})
            return _create_list(
                user=user,
                protocol=protocol,
                source=ListSource.UPLOADED,
                entries=entries,
                per_stratum=0,
                note=note,
                idempotency_key=idempotency_key,
            )
    except IntegrityError:
        _refuse_repeat(idempotency_key)
        raise


@transaction.atomic
def randomization_list_activate(
    *, user, randomization_list: RandomizationList
) -> RandomizationList:
    """Randomization draws from this list from now on; the list active before is retired."""
    _require_administrator(user)
    randomization_list = RandomizationList.objects.select_for_update().get(pk=randomization_list.pk)
    if randomization_list.status != ListStatus.DRAFT:
        raise ValidationError(_("Only a draft list can be activated."))
    for other in RandomizationList.objects.select_for_update().filter(
        protocol=randomization_list.protocol, status=ListStatus.ACTIVE
    ):
        other.status = ListStatus.RETIRED
        audited_save(
            other,
            user=user,
            reason=_("Replaced by list %(pk)s") % {"pk": randomization_list.pk},
        )
    randomization_list.status = ListStatus.ACTIVE
    return audited_save(randomization_list, user=user, reason=_("Activated"))


def list_access_record(
    *, randomization_list: RandomizationList, user, action: str, address: str | None = None
) -> ListAccessLog:
    """Every look at a concealed list leaves a row, whoever looks."""
    return ListAccessLog.objects.create(
        randomization_list=randomization_list, user=user, action=action, address=address
    )


# --- Allocation ----------------------------------------------------------------------------------


def participant_randomize(*, participant: Participant, user, idempotency_key: UUID) -> Allocation:
    """Once per participant, and once per key: a second call with the same key returns the
    first allocation. Within a stratum, entries are used strictly in sequence (row lock)."""
    existing = _allocation_by_key(idempotency_key)
    if existing is not None:
        if existing.participant_id != participant.pk:
            raise ValidationError(_("This request was already used for another participant."))
        return existing
    if participant.site_id not in (access_for(user).site_ids(*RANDOMIZERS) or ()):
        raise ValidationError(
            _("Only a coordinator or investigator of the participant's site can randomize.")
        )
    screening = latest_screening(participant)
    severity = (screening.answers or {}).get("severity", "") if screening else ""
    try:
        with transaction.atomic():
            return _allocate(
                participant=participant,
                user=user,
                severity=severity,
                idempotency_key=idempotency_key,
            )
    except StratumExhausted as exc:
        stratum_exhaustion_alert(stratum=exc.stratum)
        raise
    except IntegrityError:
        # The database refused a second allocation of the participant (or a second use of
        # the entry) that slipped past the checks: report the allocation that won.
        won = _allocation_by_key(idempotency_key) or (
            Allocation.objects.select_related("participant").filter(participant=participant).first()
        )
        if won is None:
            raise
        if won.idempotency_key == idempotency_key:
            return won
        raise AlreadyRandomized(won) from None


def _allocation_by_key(key: UUID) -> Allocation | None:
    return (
        Allocation.objects.select_related("participant", "arm", "stratum")
        .filter(idempotency_key=key)
        .first()
    )


def _allocate(
    *, participant: Participant, user, severity: str, idempotency_key: UUID
) -> Allocation:
    # First the participant's row (a withdrawal takes the same lock), then the gate again
    # under it: what was checked before the transaction may have changed since.
    Participant.objects.select_for_update().filter(pk=participant.pk).first()
    # Under the participant's lock an allocation of theirs committed meanwhile is seen here,
    # before the stratum's lock, which others may be waiting for.
    prior = Allocation.objects.select_related("participant").filter(participant=participant).first()
    if prior is not None:
        if prior.idempotency_key == idempotency_key:
            return prior
        raise AlreadyRandomized(prior)
    missing = randomization_gate(participant)
    if missing:
        raise ValidationError(missing)
    protocol = Protocol.objects.get(is_current=True)
    active = RandomizationList.objects.filter(protocol=protocol, status=ListStatus.ACTIVE).first()
    if active is None:
        raise ValidationError(
            _("No randomization list is active. Ask the trial administrator to activate one.")
        )
    # The lock: until this transaction ends, nobody else allocates in this stratum. On
    # SQLite, the IMMEDIATE transaction already holds the database's write lock here.
    stratum = (
        Stratum.objects.select_for_update()
        .filter(
            randomization_list=active,
            site=participant.site if protocol.stratify_by_site else None,
            severity=severity,
        )
        .first()
    )
    if stratum is None:
        raise ValidationError(
            _("The active list has no stratum for site %(site)s and severity '%(severity)s'.")
            % {"site": participant.site.code, "severity": severity}
        )
    # The lowest unused entry, never a later one: skipping would break the block balance.
    entry = (
        ListEntry.objects.filter(stratum=stratum, allocation__isnull=True)
        .select_related("arm")
        .order_by("sequence")
        .first()
    )
    if entry is None:
        raise StratumExhausted(stratum)
    now = timezone.now()
    if not active.is_locked:
        _lock_list(randomization_list=active, user=user, when=now)
    allocation = audited_save(
        Allocation(
            participant=participant,
            entry=entry,
            stratum=stratum,
            arm=entry.arm,
            randomization_number=f"R{active.pk}-{stratum.code}-{entry.sequence:04d}",
            randomized_at=now,
            randomized_by=user,
            idempotency_key=idempotency_key,
        ),
        user=user,
        keys_checked_by_database=True,  # an IntegrityError is answered in participant_randomize
    )
    notice = AllocationNotice.objects.create(allocation=allocation)
    participant_allocated.send(sender=Allocation, allocation=allocation, user=user)
    from .tasks import allocation_notify

    enqueue_on_commit(allocation_notify, notice.pk)
    return allocation


def _lock_list(*, randomization_list: RandomizationList, user, when) -> None:
    """At the first allocation from it, the list is frozen and its SHA-256 recorded."""
    locked = RandomizationList.objects.select_for_update().get(pk=randomization_list.pk)
    if locked.is_locked:
        return
    locked.locked_at = when
    locked.sha256 = rules.list_sha256(list_entries(locked))
    audited_save(locked, user=user, reason=_("Locked at the first randomization"))


@transaction.atomic
def allocation_mark_in_error(*, allocation: Allocation, user, reason: str) -> Allocation:
    """Never deleted, never re-used: an allocation in error keeps its entry and stays in every
    count and export, with who marked it, when and why."""
    _require_administrator(user)
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": _("Say why this randomization is in error.")})
    allocation = Allocation.objects.select_for_update().get(pk=allocation.pk)
    if allocation.status == AllocationStatus.IN_ERROR:
        raise ValidationError(_("This randomization is already marked in error."))
    allocation.status = AllocationStatus.IN_ERROR
    allocation.error_reason = reason
    allocation.marked_in_error_by = user
    allocation.marked_in_error_at = timezone.now()
    return audited_save(allocation, user=user, reason=reason)


# --- Alerts and notices --------------------------------------------------------------------------


@transaction.atomic
def stratum_exhaustion_alert(*, stratum: Stratum) -> bool:
    """Alerts the administrators once per stratum: the stratum row is claimed under a lock."""
    stratum = Stratum.objects.select_for_update().get(pk=stratum.pk)
    if stratum.exhausted_alert_at is not None:
        return False
    stratum.exhausted_alert_at = timezone.now()
    audited_save(stratum, reason=_("Stratum exhausted: administrators alerted"))
    from .tasks import stratum_exhausted_notify

    enqueue_on_commit(stratum_exhausted_notify, stratum.pk)
    return True


def allocation_notice_message(allocation: Allocation) -> tuple[str, str]:
    """Subject and body: the study number and the arm, never a name or a hospital number."""
    participant = allocation.participant
    when = timezone.localtime(allocation.randomized_at, participant.site.zone)
    subject = _("Randomized: %(study_number)s to %(arm)s") % {
        "study_number": participant.study_number,
        "arm": allocation.arm.code,
    }
    body = _(
        "%(study_number)s was randomized to arm %(arm_code)s (%(arm)s) on %(when)s "
        "(%(zone)s).\nRandomization number: %(number)s\n\n%(url)s"
    ) % {
        "study_number": participant.study_number,
        "arm_code": allocation.arm.code,
        "arm": allocation.arm.localized_name(),
        "when": when.strftime("%Y-%m-%d %H:%M"),
        "zone": participant.site.time_zone,
        "number": allocation.randomization_number,
        "url": settings.SITE_URL.rstrip("/") + allocation_url(allocation),
    }
    return subject, body


def allocation_url(allocation: Allocation) -> str:
    from django.urls import reverse

    return reverse("arms:allocation_detail", args=[allocation.participant.study_number])


# A notice claimed this long ago and still "sending" belongs to a worker that died mid-send.
NOTICE_CLAIM_LEASE = timedelta(minutes=10)
NOTICE_MAX_ATTEMPTS = 5


def allocation_notice_send(*, notice_id: int) -> bool:
    """Idempotent: the notice row is claimed by a conditional UPDATE before sending, so a
    task delivered twice sends one e-mail. A failure puts it back for the next sweep, and
    the fifth failure marks it failed."""
    now = timezone.now()
    claimed = AllocationNotice.objects.filter(pk=notice_id, status=NoticeStatus.PENDING).update(
        status=NoticeStatus.SENDING, attempts=F("attempts") + 1, claimed_at=now
    )
    if not claimed:
        return False
    notice = AllocationNotice.objects.select_related(
        "allocation__participant__site", "allocation__arm"
    ).get(pk=notice_id)
    allocation = notice.allocation
    site = allocation.participant.site
    by_language = emails_by_language(
        RoleAssignment.objects.filter(role=Role.INVESTIGATOR, site=site), site=site
    )
    recipients = [email for emails in by_language.values() for email in emails]
    try:
        for language, emails in by_language.items():
            with translation.override(language):
                subject, body = allocation_notice_message(allocation)
            send_mail(subject, body, None, emails)
    except Exception as exc:
        final = notice.attempts >= NOTICE_MAX_ATTEMPTS
        AllocationNotice.objects.filter(pk=notice_id).update(
            status=NoticeStatus.FAILED if final else NoticeStatus.PENDING,
            last_error=str(exc)[:2000],
        )
        logger.warning("allocation notice %s failed (attempt %s)", notice_id, notice.attempts)
        return False
    AllocationNotice.objects.filter(pk=notice_id).update(
        status=NoticeStatus.SENT, sent_at=timezone.now(), recipients=", ".join(recipients)
    )
    return True


def allocation_notices_sweep(*, now=None, limit: int = 100) -> int:
    """What the beat runs every minute: notices whose message was lost (broker down at
    commit, worker killed) or whose sending failed are sent from their rows. Returns how
    many went out."""
    now = now or timezone.now()
    # Released, not re-sent here: a crash after the mail left but before the row said so can
    # send one notice twice; no mail system can rule that out.
    AllocationNotice.objects.filter(
        status=NoticeStatus.SENDING, claimed_at__lt=now - NOTICE_CLAIM_LEASE
    ).update(status=NoticeStatus.PENDING)
    pending = AllocationNotice.objects.filter(status=NoticeStatus.PENDING).order_by("pk")
    return sum(
        allocation_notice_send(notice_id=pk) for pk in pending.values_list("pk", flat=True)[:limit]
    )


def stratum_exhausted_email(*, stratum_id: int) -> int:
    stratum = Stratum.objects.get(pk=stratum_id)
    by_language = emails_by_language(RoleAssignment.objects.filter(role=Role.ADMINISTRATOR))
    for language, emails in by_language.items():
        with translation.override(language):
            send_mail(
                _("Randomization list exhausted: stratum %(stratum)s") % {"stratum": stratum.code},
                _(
                    "A participant of stratum %(stratum)s could not be randomized: list "
                    "%(list)s has no entry left in it. Provide a new list before anyone else "
                    "in this stratum is randomized."
                )
                % {"stratum": stratum.code, "list": stratum.randomization_list_id},
                None,
                emails,
            )
    return sum(len(emails) for emails in by_language.values())
