"""Writes of enrollment: registration, screening, consent, refusal, withdrawal, sign-off.

Each is keyword-only, one transaction, validated before it saves, and audited. Forms carry a
submission token: a second submit of the same form returns the first record.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from trialsite.core.access import access_for
from trialsite.core.audit import audited_save
from trialsite.core.clock import site_today
from trialsite.core.languages import emails_by_language
from trialsite.core.models import Protocol, Role, RoleAssignment, Site
from trialsite.core.signatures import signature_bind, signature_is_valid, signature_verify

from . import rules
from .crypto import mrn_hash
from .models import (
    Consent,
    ConsentRefusal,
    ConsentVersion,
    EligibilitySignoff,
    Participant,
    ReconsentStatus,
    ReconsentTask,
    Screening,
    Signer,
    SignoffNotice,
    SignoffNoticeStatus,
    StudyNumberCounter,
    Withdrawal,
)
from .selectors import (
    awaits_signoff,
    current_protocol,
    current_versions,
    has_current_consent,
    is_randomized,
    latest_screening,
    screening_refusal,
    signoff_refusal,
)
from .signals import withdrawal_recorded

logger = logging.getLogger(__name__)

STUDY_NUMBER_DIGITS = 4
# Shown to the signer and kept with the signature in the language it was shown in.
SIGNOFF_MEANING = gettext_lazy("I confirm this patient is eligible.")


class DuplicateParticipant(Exception):
    """The MRN is already registered at the site: use the existing participant."""

    def __init__(self, participant: Participant):
        self.participant = participant
        super().__init__(f"MRN already registered as {participant.study_number}")


def _existing(model, token: UUID | None):
    return model.objects.filter(submission_token=token).first() if token else None


# --- Registry ------------------------------------------------------------------------------------


@transaction.atomic
def participant_register(
    *,
    site: Site,
    user,
    name: str,
    mrn: str,
    sex: str,
    date_of_birth: date,
    contact: str = "",
) -> Participant:
    """Gap-free study numbers: the site's counter row is locked until the participant row
    is written, in this transaction; a rejected registration takes no number."""
    protocol = current_protocol()
    problem = rules.date_of_birth_error(
        date_of_birth, today=site_today(site), protocol_rules=protocol.rules
    )
    if problem:
        raise ValidationError({"date_of_birth": problem})
    digest = mrn_hash(site_code=site.code, mrn=mrn)
    StudyNumberCounter.objects.get_or_create(site=site)
    counter = StudyNumberCounter.objects.select_for_update().get(site=site)
    # Checked under the lock: two clerks registering one MRN at once find each other.
    existing = Participant.objects.filter(site=site, mrn_hash=digest).first()
    if existing is not None:
        raise DuplicateParticipant(existing)
    counter.last_number += 1
    counter.save(update_fields=["last_number"])
    participant = Participant(
        site=site,
        sequence=counter.last_number,
        study_number=f"{site.code}-{counter.last_number:0{STUDY_NUMBER_DIGITS}d}",
        name=name.strip(),
        mrn=mrn.strip(),
        mrn_hash=digest,
        contact=contact.strip(),
        sex=sex,
        date_of_birth=date_of_birth,
        registered_by=user,
    )
    return audited_save(participant, user=user)


# --- Screening -----------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


@transaction.atomic
def participant_screen(
    *,
    participant: Participant,
    user,
    answers: dict[str, Any],
    submission_token: UUID | None = None,
    protocol: Protocol | None = None,
) -> Screening:
    """A new screening against the current protocol's criteria; earlier ones are kept. Never
    after randomization. Idempotent per submission token."""
    if existing := _existing(Screening, submission_token):
        return existing
    # The participant's row lock orders this against a randomization in progress (which takes
    # it too): either the randomization sees this screening, unsigned, or this sees its
    # allocation and refuses.
    Participant.objects.select_for_update().filter(pk=participant.pk).first()
    if refusal := screening_refusal(participant):
        raise ValidationError(refusal)
    protocol = protocol or current_protocol()
    criteria = list(protocol.criteria.all())
    today = site_today(participant.site)
    answers = {
        **answers,
        # From the registry and the consent records, not typed again.
        "sex": participant.sex,
        "date_of_birth": participant.date_of_birth,
        "informed_consent": has_current_consent(participant, on=today),
    }
    errors = rules.screening_input_errors(
        answers, criteria, today=today, protocol_rules=protocol.rules
    )
    if errors:
        raise ValidationError(errors)
    evaluation = rules.evaluate(criteria, answers, protocol.rules)
    screening = Screening(
        participant=participant,
        protocol=protocol,
        screened_by=user,
        screening_date=answers["screening_date"],
        answers={k: _json_value(v) for k, v in answers.items()},
        decision=evaluation.decision,
        results=[r.as_dict() for r in evaluation.results],
        failures=evaluation.failures,
        submission_token=submission_token,
    )
    screening = audited_save(screening, user=user)
    if awaits_signoff(screening):
        # In this transaction: the investigators are told of every screening that waits for
        # them, and of none that was rolled back. The sweep sends it.
        SignoffNotice.objects.create(screening=screening)
    return screening


# --- Consent -------------------------------------------------------------------------------------


@transaction.atomic
def consent_version_create(
    *,
    user,
    version: str,
    language: str,
    irb_approval_date: date,
    effective_date: date,
    document=None,
    protocol: Protocol | None = None,
) -> ConsentVersion:
    consent_version = ConsentVersion(
        protocol=protocol or current_protocol(),
        version=version.strip(),
        language=language,
        irb_approval_date=irb_approval_date,
        effective_date=effective_date,
        created_by=user,
    )
    if document:
        consent_version.document = document
    return audited_save(consent_version, user=user)


@transaction.atomic
def consent_record(
    *,
    participant: Participant,
    user,
    version: ConsentVersion,
    consented_at: datetime,
    signer: str,
    lar_name: str = "",
    lar_relationship: str = "",
    witness_needed: bool = False,
    witness_name: str = "",
    copy_given: bool = False,
    submission_token: UUID | None = None,
) -> Consent:
    """Consent on the version in force, not in the future, not before the version took
    effect. An LAR's consent opens a re-consent task; the participant's own consent closes
    the open ones. Idempotent per submission token."""
    if existing := _existing(Consent, submission_token):
        return existing
    zone = participant.site.zone
    today = site_today(participant.site)
    errors: dict[str, str] = {}
    if consented_at > timezone.now():
        errors["consented_at"] = _("The time of consent cannot be in the future.")
    elif timezone.localtime(consented_at, zone).date() < version.effective_date:
        errors["consented_at"] = _(
            "The time of consent is before version %(version)s took effect on %(date)s."
        ) % {"version": version.version, "date": version.effective_date.isoformat()}
    current = current_versions(on=today, protocol=version.protocol).get(version.language)
    if current is None or current.pk != version.pk:
        errors["version"] = (
            _("Only the current version may be used for a new consent: %(current)s.")
            % {"current": current}
            if current
            else _("Version %(version)s is not in effect.") % {"version": version}
        )
    if signer == Signer.LAR:
        if not lar_name.strip():
            errors["lar_name"] = _("Give the representative's name.")
        if not lar_relationship.strip():
            errors["lar_relationship"] = _("Give the representative's relationship.")
    if witness_needed and not witness_name.strip():
        errors["witness_name"] = _("Name the impartial witness.")
    if errors:
        raise ValidationError(errors)
    is_lar = signer == Signer.LAR
    consent = audited_save(
        Consent(
            participant=participant,
            version=version,
            consented_at=consented_at,
            signer=signer,
            lar_name=lar_name.strip() if is_lar else "",
            lar_relationship=lar_relationship.strip() if is_lar else "",
            witness_needed=witness_needed,
            witness_name=witness_name.strip() if witness_needed else "",
            obtained_by=user,
            copy_given=copy_given,
            submission_token=submission_token,
        ),
        user=user,
    )
    if is_lar:
        audited_save(ReconsentTask(participant=participant, lar_consent=consent), user=user)
    else:
        for task in participant.reconsent_tasks.filter(status=ReconsentStatus.OPEN):
            task.status = ReconsentStatus.DONE
            task.done_by_consent = consent
            audited_save(task, user=user, reason=_("Re-consented in person"))
    return consent


@transaction.atomic
def consent_refusal_record(
    *,
    participant: Participant,
    user,
    refused_on: date,
    reason: str,
    submission_token: UUID | None = None,
) -> ConsentRefusal:
    """Idempotent per submission token."""
    if existing := _existing(ConsentRefusal, submission_token):
        return existing
    if refused_on > site_today(participant.site):
        raise ValidationError({"refused_on": _("The date cannot be in the future.")})
    return audited_save(
        ConsentRefusal(
            participant=participant,
            refused_on=refused_on,
            reason=reason.strip(),
            recorded_by=user,
            submission_token=submission_token,
        ),
        user=user,
    )


@transaction.atomic
def withdrawal_record(
    *,
    participant: Participant,
    user,
    scope: str,
    withdrawn_on: date,
    reason: str,
    submission_token: UUID | None = None,
) -> Withdrawal:
    """What stops is the scope; later steps (doses, visits, exports) read it. Idempotent per
    submission token."""
    if existing := _existing(Withdrawal, submission_token):
        return existing
    # The participant's row lock orders this against a randomization in progress: either it
    # sees the withdrawal in its gate, or its doses exist here to be cancelled.
    Participant.objects.select_for_update().filter(pk=participant.pk).first()
    if withdrawn_on > site_today(participant.site):
        raise ValidationError({"withdrawn_on": _("The date cannot be in the future.")})
    if not participant.consents.exists():
        raise ValidationError(_("There is no consent to withdraw."))
    withdrawal = audited_save(
        Withdrawal(
            participant=participant,
            scope=scope,
            withdrawn_on=withdrawn_on,
            reason=reason.strip(),
            recorded_by=user,
            submission_token=submission_token,
        ),
        user=user,
    )
    # Every scope stops study treatment: what is planned stops, in this transaction.
    withdrawal_recorded.send(
        sender=Withdrawal, participant=participant, withdrawal=withdrawal, user=user
    )
    return withdrawal


# --- Eligibility sign-off ------------------------------------------------------------------------


def eligibility_signoff(*, participant: Participant, user, password: str) -> EligibilitySignoff:
    """An investigator of the participant's site signs the latest, eligible screening, after
    re-entering their password. One signature per screening (a second submit returns it); a
    signature invalidated by a change since is signed again, the earlier one kept with it."""
    if participant.site_id not in (access_for(user).site_ids(Role.INVESTIGATOR) or ()):
        raise ValidationError(_("Only an investigator of the participant's site can sign off."))
    # Before the password: a screening that cannot be signed costs no attempt at the lock-out.
    if refusal := signoff_refusal(latest_screening(participant)):
        raise ValidationError(refusal)
    # Outside the transaction: a wrong password must stay counted when the signing fails.
    signature_verify(user=user, password=password)
    return _signoff_write(participant=participant, user=user)


@transaction.atomic
def _signoff_write(*, participant: Participant, user) -> EligibilitySignoff:
    # Again in the transaction: a re-screening may have landed since the first check.
    screening = latest_screening(participant)
    if refusal := signoff_refusal(screening):
        raise ValidationError(refusal)
    signoff = EligibilitySignoff.objects.select_for_update().filter(screening=screening).first()
    if signoff is not None and signature_is_valid(signoff):
        return signoff
    signing_again = signoff is not None
    if signoff is None:
        signoff = EligibilitySignoff(screening=screening)
    else:
        # Read under the lock: it is what the earlier signature is kept as.
        signoff.screening = screening
    signature_bind(signoff, signer=user, signed_at=timezone.now(), meaning=str(SIGNOFF_MEANING))
    return audited_save(
        signoff,
        user=user,
        reason=_("Signed again after the signature was invalidated") if signing_again else "",
    )


# --- The sign-off notice -------------------------------------------------------------------------

# A notice claimed this long ago and still "sending" belongs to a worker that died mid-send.
NOTICE_CLAIM_LEASE = timedelta(minutes=10)
NOTICE_MAX_ATTEMPTS = 5


def signoff_notice_message(screening: Screening) -> tuple[str, str]:
    """Subject and body, in the active language: the study number and a link, never a name or
    a hospital number."""
    participant = screening.participant
    subject = _("Eligibility to sign off: %(study_number)s") % {
        "study_number": participant.study_number
    }
    body = _(
        "%(study_number)s was screened eligible on %(date)s at %(site)s and waits for an "
        "investigator's sign-off before randomization.\n\n%(url)s"
    ) % {
        "study_number": participant.study_number,
        "date": screening.screening_date.isoformat(),
        "site": participant.site.code,
        "url": settings.SITE_URL.rstrip("/")
        + reverse("enrollment:eligibility_signoff", args=[participant.study_number]),
    }
    return subject, body


def signoff_notice_send(*, notice_id: int) -> bool:
    """Idempotent: the row is claimed by a conditional UPDATE before sending, so a second
    sweep sends nothing. A screening signed, superseded or randomized meanwhile is not asked
    for; a failure goes back to the next sweep, and the fifth is final."""
    claimed = SignoffNotice.objects.filter(pk=notice_id, status=SignoffNoticeStatus.PENDING).update(
        status=SignoffNoticeStatus.SENDING, attempts=F("attempts") + 1, claimed_at=timezone.now()
    )
    if not claimed:
        return False
    notice = SignoffNotice.objects.select_related("screening__participant__site").get(pk=notice_id)
    screening = notice.screening
    participant = screening.participant
    latest = latest_screening(participant)
    if (
        latest is None
        or latest.pk != screening.pk
        or not awaits_signoff(latest)
        or is_randomized(participant)
    ):
        SignoffNotice.objects.filter(pk=notice_id).update(status=SignoffNoticeStatus.NOT_NEEDED)
        return False
    site = participant.site
    by_language = emails_by_language(
        RoleAssignment.objects.filter(role=Role.INVESTIGATOR, site=site), site=site
    )
    try:
        for language, emails in by_language.items():
            with translation.override(language):
                subject, body = signoff_notice_message(screening)
            send_mail(subject, body, None, emails)
    except Exception as exc:
        final = notice.attempts >= NOTICE_MAX_ATTEMPTS
        SignoffNotice.objects.filter(pk=notice_id).update(
            status=SignoffNoticeStatus.FAILED if final else SignoffNoticeStatus.PENDING,
            last_error=str(exc)[:2000],
        )
        logger.warning("sign-off notice %s failed (attempt %s)", notice_id, notice.attempts)
        return False
    SignoffNotice.objects.filter(pk=notice_id).update(
        status=SignoffNoticeStatus.SENT,
        sent_at=timezone.now(),
        recipients=", ".join(email for emails in by_language.values() for email in emails),
    )
    return True


def signoff_notices_sweep(*, now: datetime | None = None, limit: int = 100) -> int:
    """What the beat runs every minute: pending notices are sent from their rows, and those
    left "sending" by a worker that died are released. Returns how many went out."""
    now = now or timezone.now()
    # Released, not re-sent here: a crash after the mail left but before the row said so can
    # send one notice twice; no mail system can rule that out.
    SignoffNotice.objects.filter(
        status=SignoffNoticeStatus.SENDING, claimed_at__lt=now - NOTICE_CLAIM_LEASE
    ).update(status=SignoffNoticeStatus.PENDING)
    pending = SignoffNotice.objects.filter(status=SignoffNoticeStatus.PENDING).order_by("pk")
    return sum(
        signoff_notice_send(notice_id=pk) for pk in pending.values_list("pk", flat=True)[:limit]
    )
