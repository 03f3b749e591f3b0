"""A participant's whole story on one page: enrollment's own events and every other app's
answer to `participant_timeline`, in date order, with what is due next apart at the top."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from django.urls import reverse
from django.utils.translation import gettext as _

from trialsite.core.signatures import signature_is_valid

from .models import Decision, Participant, Signer
from .selectors import awaits_signoff, signoff_invalidated
from .signals import TimelineEntry, participant_timeline


@dataclass(frozen=True)
class Story:
    events: list[TimelineEntry]  # what happened, oldest first
    due: list[TimelineEntry]  # what is planned, the soonest first


def story_order(entry: TimelineEntry, zone: ZoneInfo) -> tuple:
    """Day at the site first; within a day, the time it happened, or for a day-only entry
    the time it was recorded that day (a day-0 visit after the randomization of that
    morning). What is due now, whatever the date, comes first. Ties keep the order the apps
    answered in, the order of the trial's steps."""
    if entry.at is None:
        return (date.min, time.min)
    if isinstance(entry.at, datetime):
        local = entry.at.astimezone(zone)
        return (local.date(), local.time())
    recorded = entry.order_at.astimezone(zone) if entry.order_at else None
    # Recorded on a later day says nothing of the hour: the end of its own day, then.
    within = recorded.time() if recorded and recorded.date() == entry.at else time.max
    return (entry.at, within)


def participant_story(
    participant: Participant,
    user,
    *,
    can_write: bool,
    can_sign: bool,
    screenings,
    consents,
    refusals,
    withdrawals,
    open_tasks,
) -> Story:
    """The records already read for the page are passed in, so that enrollment's part of the
    story costs no query; each app above answers with a constant number of queries. A step
    the user may not take is shown without its link (a monitor sees that a sign-off is
    awaited, not a form that would refuse them)."""
    entries = enrollment_entries(
        participant,
        can_write=can_write,
        can_sign=can_sign,
        screenings=screenings,
        consents=consents,
        refusals=refusals,
        withdrawals=withdrawals,
        open_tasks=open_tasks,
    )
    for _receiver, answer in participant_timeline.send(
        sender=Participant, participant=participant, user=user, can_write=can_write
    ):
        entries.extend(answer or [])
    zone = participant.site.zone
    return Story(
        events=sorted((e for e in entries if not e.due), key=lambda e: story_order(e, zone)),
        due=sorted((e for e in entries if e.due), key=lambda e: story_order(e, zone)),
    )


def enrollment_entries(
    participant: Participant,
    *,
    can_write: bool,
    can_sign: bool,
    screenings,
    consents,
    refusals,
    withdrawals,
    open_tasks,
) -> list[TimelineEntry]:
    page = reverse("enrollment:participant_detail", args=[participant.study_number])
    entries = [
        TimelineEntry(
            at=participant.registered_at,
            kind="registration",
            title=_("Registered"),
            detail=participant.study_number,
            url=page,
            record=participant,
        )
    ]
    tones = {Decision.ELIGIBLE: "success", Decision.INELIGIBLE: "danger"}
    for screening in screenings:
        entries.append(
            TimelineEntry(
                at=screening.screening_date,
                order_at=screening.recorded_at,
                kind="screening",
                title=_("Screening: %(decision)s") % {"decision": screening.get_decision_display()},
                url=f"{page}#screening-{screening.pk}",
                record=screening,
                tone=tones.get(screening.decision, "warning"),
            )
        )
        signoff = getattr(screening, "signoff", None)
        if signoff is not None:
            valid = signature_is_valid(signoff)
            entries.append(
                TimelineEntry(
                    at=signoff.signed_at,
                    kind="signoff",
                    title=_("Eligibility signed off")
                    if valid
                    else _("Eligibility sign-off: signature invalidated: changed after signing"),
                    detail=_("%(name)s · %(meaning)s")
                    % {"name": signoff.printed_name, "meaning": signoff.meaning},
                    url=f"{page}#screening-{screening.pk}",
                    record=signoff,
                    tone="success" if valid else "danger",
                )
            )
    for consent in consents:
        signer = _("legally authorised representative") if consent.signer == Signer.LAR else ""
        entries.append(
            TimelineEntry(
                at=consent.consented_at,
                kind="consent",
                title=_("Consent given"),
                detail=" · ".join(filter(None, [str(consent.version), signer])),
                url=f"{page}#consent",
                record=consent,
                tone="success",
            )
        )
    for refusal in refusals:
        entries.append(
            TimelineEntry(
                at=refusal.refused_on,
                kind="refusal",
                title=_("Refused consent"),
                detail=refusal.reason,
                url=f"{page}#consent",
                record=refusal,
            )
        )
    for withdrawal in withdrawals:
        entries.append(
            TimelineEntry(
                at=withdrawal.withdrawn_on,
                kind="withdrawal",
                title=_("Withdrawal: %(scope)s") % {"scope": withdrawal.get_scope_display()},
                detail=withdrawal.reason,
                url=f"{page}#consent",
                record=withdrawal,
                tone="danger",
            )
        )
    for task in open_tasks:
        entries.append(
            TimelineEntry(
                at=None,
                kind="reconsent",
                title=_("Re-consent the participant in person when able"),
                url=reverse("enrollment:consent_record", args=[participant.study_number])
                if can_write
                else "",
                record=task,
                tone="warning",
                due=True,
            )
        )
    latest = screenings[0] if screenings else None
    if awaits_signoff(latest):
        entries.append(
            TimelineEntry(
                at=None,
                kind="signoff_awaited",
                title=_(
                    "Sign eligibility off again: the signature was invalidated (changed after "
                    "signing)"
                )
                if signoff_invalidated(latest)
                else _("Eligibility sign-off by an investigator"),
                url=reverse("enrollment:eligibility_signoff", args=[participant.study_number])
                if can_sign
                else "",
                record=latest,
                tone="warning",
                due=True,
            )
        )
    return entries
