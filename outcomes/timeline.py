"""Outcomes' part of a participant's story: visits done or missed, adverse events, their
causality and report, the end of study; the next visit and any SAE report as what is due."""

from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from enrollment.signals import TimelineEntry
from trialsite.core.access import access_for
from trialsite.core.clock import site_today
from trialsite.core.models import Role
from trialsite.core.signatures import SignatureStatus, signature_is_valid

from .models import AdverseEvent, ScheduledVisit, VisitStatus
from .rules import time_left_text
from .selectors import end_of_study


def visit_entries(participant) -> list[TimelineEntry]:
    """One query: the visits with their definition and record."""
    visits = (
        ScheduledVisit.objects.filter(participant=participant)
        .select_related("definition", "record")
        .order_by("study_day")
    )
    today = site_today(participant.site)
    entries = []
    next_visit = None
    for visit in visits:
        name = _("Visit %(code)s, %(name)s") % {
            "code": visit.definition.code,
            "name": visit.definition.localized_name(),
        }
        url = reverse("outcomes:visit_detail", args=[visit.pk])
        record = getattr(visit, "record", None)
        if record is not None:
            late = visit.status == VisitStatus.DONE_OUT_OF_WINDOW
            detail = (
                _("WHO score %(score)s") % {"score": record.who_score}
                if record.who_score is not None
                else ""
            )
            entries.append(
                TimelineEntry(
                    at=record.visit_date,
                    order_at=record.recorded_at,
                    kind="visit",
                    title=f"{name}: {visit.get_status_display()}",
                    detail=detail,
                    url=url,
                    record=record,
                    tone="warning" if late else "success",
                )
            )
        elif visit.status == VisitStatus.MISSED:
            entries.append(
                TimelineEntry(
                    at=visit.window_end,
                    kind="visit",
                    title=f"{name}: {visit.get_status_display()}",
                    url=url,
                    record=visit,
                    tone="danger",
                )
            )
        elif visit.status == VisitStatus.DUE and (visit.window_end < today or next_visit is None):
            # A closed window not yet marked missed (the sweep runs each minute) is overdue:
            # it may still be recorded, out of window.
            overdue = visit.window_end < today
            next_visit = next_visit if overdue else visit
            entries.append(
                TimelineEntry(
                    at=visit.due_on,
                    kind="visit_due",
                    title=name,
                    detail=_("window %(start)s to %(end)s")
                    % {"start": visit.window_start, "end": visit.window_end},
                    url=url,
                    record=visit,
                    tone="danger" if overdue else "info",
                    due=True,
                    overdue=overdue,
                )
            )
    return entries


def adverse_event_entries(participant, *, now=None, can_sign: bool = False) -> list[TimelineEntry]:
    """Three queries: the adverse events with their causality and its relatedness (what the
    signature's check reads), and the end of study. A signature to give again, or the end of
    study's to give, is due; its link is for who may sign (`can_sign`)."""
    now = now or timezone.now()
    page = reverse("outcomes:ae_list", args=[participant.study_number])
    entries = []
    for event in (
        AdverseEvent.objects.filter(participant=participant)
        .select_related("causality")
        .prefetch_related("causality__relatedness")
        .order_by("onset_date", "pk")
    ):
        url = f"{page}#ae-{event.pk}"
        seriousness = _("serious") if event.serious else _("not serious")
        entries.append(
            TimelineEntry(
                at=event.onset_date,
                order_at=event.recorded_at,
                kind="adverse_event",
                title=_("Adverse event: %(term)s") % {"term": event.term},
                detail=_("CTCAE grade %(grade)s, %(seriousness)s")
                % {"grade": event.grade, "seriousness": seriousness},
                url=url,
                record=event,
                tone="danger" if event.serious else "warning",
            )
        )
        causality = getattr(event, "causality", None)
        if causality is not None:
            valid = signature_is_valid(causality)
            entries.append(
                TimelineEntry(
                    at=causality.signed_at,
                    kind="causality",
                    title=(
                        _("Causality of %(term)s signed")
                        if valid
                        else _(
                            "Causality of %(term)s: signature invalidated: changed after signing"
                        )
                    )
                    % {"term": event.term},
                    detail=_("%(name)s · %(meaning)s")
                    % {"name": causality.printed_name, "meaning": causality.meaning},
                    url=url,
                    record=causality,
                    tone="secondary" if valid else "danger",
                )
            )
            if not valid:
                entries.append(
                    TimelineEntry(
                        at=None,
                        kind="causality_sign_again",
                        title=_(
                            "Assess and sign the causality of %(term)s again: the signature "
                            "was invalidated (changed after signing)"
                        )
                        % {"term": event.term},
                        url=reverse("outcomes:ae_causality", args=[event.pk]) if can_sign else "",
                        record=causality,
                        tone="warning",
                        due=True,
                    )
                )
        if event.reported_on is not None:
            entries.append(
                TimelineEntry(
                    at=event.reported_on,
                    kind="sae_report",
                    title=_("%(term)s reported to sponsor and ethics") % {"term": event.term},
                    url=url,
                    record=event,
                )
            )
        elif event.report_open:
            due_at = event.report_due_at
            entries.append(
                TimelineEntry(
                    at=due_at,
                    kind="sae_report_due",
                    title=_("Report %(term)s to sponsor and ethics") % {"term": event.term},
                    detail=time_left_text(due_at, now),
                    url=url,
                    record=event,
                    tone="danger",
                    due=True,
                    overdue=due_at < now,
                )
            )
    end = end_of_study(participant)
    if end is not None:
        entries.append(
            TimelineEntry(
                at=end.ended_on,
                order_at=end.recorded_at,
                kind="end_of_study",
                title=_("End of study: %(reason)s") % {"reason": end.get_reason_display()},
                detail=" · ".join(filter(None, [end.details, _end_signature_text(end)])),
                url=page,
                record=end,
                tone="dark",
            )
        )
        if not signature_is_valid(end):
            again = end.signature_status != SignatureStatus.UNSIGNED
            entries.append(
                TimelineEntry(
                    at=None,
                    kind="end_of_study_signature",
                    title=_(
                        "Sign the end of study again: the signature was invalidated (changed "
                        "after signing)"
                    )
                    if again
                    else _("The investigator's signature on the end of study"),
                    url=reverse("outcomes:end_of_study_sign", args=[participant.study_number])
                    if can_sign
                    else "",
                    record=end,
                    tone="warning",
                    due=True,
                )
            )
    return entries


def _end_signature_text(end) -> str:
    if end.signature_status == SignatureStatus.UNSIGNED:
        return ""
    if not signature_is_valid(end):
        return _("signed by %(name)s: signature invalidated: changed after signing") % {
            "name": end.printed_name
        }
    return _("signed by %(name)s · %(meaning)s") % {
        "name": end.printed_name,
        "meaning": end.meaning,
    }


def can_sign_for(user, participant) -> bool:
    return participant.site_id in (access_for(user).site_ids(Role.INVESTIGATOR) or ())
