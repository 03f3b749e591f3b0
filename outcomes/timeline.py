"""Outcomes' part of a participant's story: visits done or missed, adverse events, their
causality and report, the end of study; the next visit and any SAE report as what is due."""

from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from enrollment.signals import TimelineEntry
from trialsite.core.clock import site_today

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


def adverse_event_entries(participant, *, now=None) -> list[TimelineEntry]:
    """Two queries: the adverse events with their causality, and the end of study."""
    now = now or timezone.now()
    page = reverse("outcomes:ae_list", args=[participant.study_number])
    entries = []
    for event in (
        AdverseEvent.objects.filter(participant=participant)
        .select_related("causality")
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
            entries.append(
                TimelineEntry(
                    at=causality.signed_at,
                    kind="causality",
                    title=_("Causality of %(term)s signed") % {"term": event.term},
                    detail=causality.printed_name,
                    url=url,
                    record=causality,
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
                detail=end.details,
                url=page,
                record=end,
                tone="dark",
            )
        )
    return entries
