"""Outcomes pages: a participant's visits and the visit form."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _

from dosing.models import Administration
from enrollment.selectors import participant_for_user
from trialsite.core.access import access_for, role_required
from trialsite.core.clock import site_date, site_time_text, site_today
from trialsite.core.forms import add_service_errors
from trialsite.core.models import Role
from trialsite.core.signatures import signature_is_valid

from . import rules, selectors, services
from .forms import (
    AdverseEventForm,
    CausalityForm,
    EndOfStudyForm,
    EndOfStudySignForm,
    SaeReportForm,
    VisitCorrectionForm,
    VisitForm,
)
from .models import VisitStatus
from .selectors import AE_WRITERS, VISIT_WRITERS

# --- Visits ---


def participant_visits(request, study_number: str):
    participant = participant_for_user(request.user, study_number)
    can_write = participant.site_id in (access_for(request.user).site_ids(*VISIT_WRITERS) or ())
    return render(
        request,
        "outcomes/visit_list.html",
        {
            "participant": participant,
            "visits": selectors.participant_visits(participant),
            "can_write": can_write,
        },
    )


def visit_detail(request, pk: int):
    visit = selectors.visit_for_user(request.user, pk)
    can_write = visit.participant.site_id in (
        access_for(request.user).site_ids(*VISIT_WRITERS) or ()
    )
    return render(
        request,
        "outcomes/visit_detail.html",
        {
            "visit": visit,
            "record": getattr(visit, "record", None),
            "can_write": can_write,
        },
    )


@role_required(*VISIT_WRITERS)
def visit_record(request, pk: int):
    visit = selectors.visit_for_user(request.user, pk, *VISIT_WRITERS)
    if hasattr(visit, "record") or visit.status == VisitStatus.NOT_REQUIRED:
        messages.info(request, _("This visit is already recorded or no longer required."))
        return redirect("outcomes:visit_detail", visit.pk)
    today = site_today(visit.participant.site)
    form = VisitForm(request.POST or None, initial={"visit_date": today, "vital_status": "alive"})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.visit_record(
                scheduled_visit=visit,
                user=request.user,
                visit_date=data["visit_date"],
                vital_status=data["vital_status"],
                date_of_death=data["date_of_death"],
                discharged_on=data["discharged_on"],
                measurements=form.measurements(),
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            visit.refresh_from_db()
            messages.success(
                request,
                _("Visit %(code)s of %(number)s recorded.")
                % {"code": visit.definition.code, "number": visit.participant.study_number},
            )
            if visit.days_outside_window:
                messages.warning(
                    request,
                    _("Done %(days)s day(s) outside its window: a protocol deviation.")
                    % {"days": abs(visit.days_outside_window)},
                )
            return redirect("outcomes:participant_visits", visit.participant.study_number)
    return render(
        request,
        "outcomes/visit_form.html",
        {"visit": visit, "form": form, "who_levels": rules.WHO_LEVELS},
    )


@role_required(*VISIT_WRITERS)
def visit_record_correct(request, pk: int):
    visit = selectors.visit_for_user(request.user, pk, *VISIT_WRITERS)
    record = getattr(visit, "record", None)
    if record is None:
        messages.info(request, _("This visit is not recorded yet: record it first."))
        return redirect("outcomes:visit_detail", visit.pk)
    form = VisitCorrectionForm(
        request.POST or None, initial=VisitCorrectionForm.initial_from(record)
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.visit_record_correct(
                record=record,
                user=request.user,
                reason=data["reason"],
                visit_date=data["visit_date"],
                vital_status=data["vital_status"],
                date_of_death=data["date_of_death"],
                discharged_on=data["discharged_on"],
                measurements=form.measurements(),
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request,
                _("Visit %(code)s of %(number)s corrected.")
                % {"code": visit.definition.code, "number": visit.participant.study_number},
            )
            return redirect("outcomes:visit_detail", visit.pk)
    return render(
        request,
        "outcomes/visit_form.html",
        {"visit": visit, "form": form, "who_levels": rules.WHO_LEVELS, "correcting": True},
    )


# --- Adverse events and end of study ---


def _site_writer(user, participant) -> bool:
    return participant.site_id in (access_for(user).site_ids(*AE_WRITERS) or ())


def _site_investigator(user, participant) -> bool:
    return participant.site_id in (access_for(user).site_ids(Role.INVESTIGATOR) or ())


def ae_list(request, study_number: str):
    participant = participant_for_user(request.user, study_number)
    now = timezone.now()
    adverse_events = [
        selectors.with_report_clock(ae, now)
        for ae in selectors.participant_adverse_events(participant)
    ]
    for ae in adverse_events:
        ae.causality_valid = signature_is_valid(getattr(ae, "causality", None))
    end = selectors.end_of_study(participant)
    context = {
        "participant": participant,
        "adverse_events": adverse_events,
        "reactions": selectors.reactions_to_report(participant),
        "end": end,
        "end_signed": signature_is_valid(end),
        "can_write": _site_writer(request.user, participant),
        "can_sign": _site_investigator(request.user, participant),
    }
    with timezone.override(participant.site.zone):
        return render(request, "outcomes/ae_list.html", context)


def _reaction_initial(participant, pk) -> dict:
    """What an infusion reaction recorded in dosing already says about the event."""
    reaction = get_object_or_404(
        Administration.objects.filter(
            scheduled_dose__participant=participant,
            infusion_reaction=True,
            voided_at__isnull=True,
        ),
        pk=pk,
    )
    return {
        "administration": reaction.pk,
        "term": _("Infusion-related reaction"),
        "onset_date": site_date(reaction.given_at, participant.site) if reaction.given_at else None,
    }


def _adverse_event_values(data: dict) -> dict:
    names = ("term", "onset_date", "end_date", "grade", "death_date", "serious", "criteria")
    return {name: data[name] for name in names} | {
        "action_taken": data["action_taken"],
        "outcome": data["outcome"],
    }


def _after_record(request, adverse_event) -> None:
    number = adverse_event.participant.study_number
    messages.success(request, _("Adverse event recorded for %(number)s.") % {"number": number})
    if adverse_event.serious:
        messages.warning(
            request,
            _(
                "Serious: the site's investigators are alerted now. Report it to the sponsor "
                "and ethics by %(due)s."
            )
            % {"due": site_time_text(adverse_event.report_due_at, adverse_event.participant.site)},
        )
    if adverse_event.grade == rules.FATAL_GRADE:
        messages.info(request, _("The participant's study ended with the death."))


@role_required(*AE_WRITERS)
def ae_record(request, study_number: str):
    participant = participant_for_user(request.user, study_number, *AE_WRITERS)
    reaction = request.GET.get("administration", "")
    initial = _reaction_initial(participant, reaction) if reaction.isdigit() else {}
    form = AdverseEventForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        administration = None
        if data["administration"]:
            administration = Administration.objects.filter(pk=data["administration"]).first()
        try:
            adverse_event = services.adverse_event_record(
                participant=participant,
                user=request.user,
                administration=administration,
                submission_token=data["submission_token"],
                **_adverse_event_values(data),
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            _after_record(request, adverse_event)
            return redirect("outcomes:ae_list", participant.study_number)
    title = _("Record an adverse event")
    context = {"participant": participant, "form": form, "title": title}
    return render(request, "outcomes/ae_form.html", context)


@role_required(*AE_WRITERS)
def ae_change(request, pk: int):
    adverse_event = selectors.adverse_event_for_user(request.user, pk, *AE_WRITERS)
    participant = adverse_event.participant
    initial = {
        name: getattr(adverse_event, name)
        for name in (
            "term",
            "onset_date",
            "end_date",
            "grade",
            "death_date",
            "serious",
            "action_taken",
            "outcome",
        )
    } | {"criteria": sorted(adverse_event.criteria)}
    form = AdverseEventForm(request.POST or None, initial=initial, changing=True)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.adverse_event_update(
                adverse_event=adverse_event,
                user=request.user,
                reason=data["reason"],
                **_adverse_event_values(data),
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Adverse event changed."))
            return redirect("outcomes:ae_list", participant.study_number)
    context = {
        "participant": participant,
        "form": form,
        "title": _("Change an adverse event"),
        "adverse_event": adverse_event,
    }
    return render(request, "outcomes/ae_form.html", context)


@role_required(Role.INVESTIGATOR)
def ae_causality(request, pk: int):
    adverse_event = selectors.adverse_event_for_user(request.user, pk, Role.INVESTIGATOR)
    participant = adverse_event.participant
    earlier = getattr(adverse_event, "causality", None)
    if signature_is_valid(earlier):
        messages.info(request, _("The causality of this adverse event is already signed."))
        return redirect("outcomes:ae_list", participant.study_number)
    interventions = selectors.participant_interventions(participant)
    # Signing again after the event changed: the earlier assessment is offered to review.
    initial = (
        {
            "expected": "yes" if earlier.expected else "no",
            **{
                f"related_{i.key}": row.relatedness
                for i in interventions
                for row in earlier.relatedness.all()
                if (row.schedule_id, row.scheduled_dose_id) == (i.schedule_id, i.dose_id)
            },
        }
        if earlier is not None
        else None
    )
    form = CausalityForm(request.POST or None, interventions=interventions, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.causality_sign(
                adverse_event=adverse_event,
                user=request.user,
                password=form.cleaned_data["password"],
                expected=form.cleaned_data["expected"],
                relatedness=form.relatedness(),
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Causality assessment signed."))
            return redirect("outcomes:ae_list", participant.study_number)
    context = {
        "participant": participant,
        "adverse_event": adverse_event,
        "form": form,
        "printed_name": request.user.get_full_name() or request.user.get_username(),
        "meaning": services.CAUSALITY_MEANING,
        "invalidated": earlier,
    }
    return render(request, "outcomes/ae_causality.html", context)


@role_required(*AE_WRITERS)
def ae_report(request, pk: int):
    adverse_event = selectors.adverse_event_for_user(request.user, pk, *AE_WRITERS)
    participant = adverse_event.participant
    form = SaeReportForm(
        request.POST or None, initial={"reported_on": site_today(participant.site)}
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.sae_report_mark(
                adverse_event=adverse_event,
                user=request.user,
                reported_on=form.cleaned_data["reported_on"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("The report to the sponsor and ethics is recorded."))
            return redirect("outcomes:ae_list", participant.study_number)
    context = {
        "participant": participant,
        "adverse_event": selectors.with_report_clock(adverse_event, timezone.now()),
        "form": form,
    }
    return render(request, "outcomes/ae_report.html", context)


def ae_open_reports(request):
    now = timezone.now()
    reports = [
        selectors.with_report_clock(ae, now) for ae in selectors.open_sae_reports(request.user)
    ]
    return render(request, "outcomes/ae_open_reports.html", {"reports": reports, "now": now})


@role_required(*AE_WRITERS)
def end_of_study(request, study_number: str):
    participant = participant_for_user(request.user, study_number, *AE_WRITERS)
    ended = selectors.end_of_study(participant)
    if ended is not None:
        messages.info(
            request,
            _("The study of %(number)s ended on %(date)s (%(reason)s).")
            % {
                "number": participant.study_number,
                "date": ended.ended_on.isoformat(),
                "reason": ended.get_reason_display(),
            },
        )
        return redirect("outcomes:ae_list", participant.study_number)
    form = EndOfStudyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.participant_study_end(
                participant=participant, user=request.user, **form.cleaned_data
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request,
                _("The study of %(number)s has ended; what was planned after it has stopped.")
                % {"number": participant.study_number},
            )
            return redirect("enrollment:participant_detail", participant.study_number)
    return render(
        request, "outcomes/end_of_study_form.html", {"participant": participant, "form": form}
    )


@role_required(Role.INVESTIGATOR)
def end_of_study_sign(request, study_number: str):
    participant = participant_for_user(request.user, study_number, Role.INVESTIGATOR)
    end = selectors.end_of_study(participant)
    if end is None:
        messages.error(
            request,
            _("The study of %(number)s has not ended: nothing to sign.")
            % {"number": participant.study_number},
        )
        return redirect("outcomes:ae_list", participant.study_number)
    if signature_is_valid(end):
        messages.info(request, _("The end of study is already signed."))
        return redirect("outcomes:ae_list", participant.study_number)
    form = EndOfStudySignForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.end_of_study_sign(
                end=end, user=request.user, password=form.cleaned_data["password"]
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("End of study signed."))
            return redirect("outcomes:ae_list", participant.study_number)
    context = {
        "participant": participant,
        "end": end,
        "form": form,
        "printed_name": request.user.get_full_name() or request.user.get_username(),
        "meaning": services.END_OF_STUDY_MEANING,
    }
    return render(request, "outcomes/end_of_study_sign.html", context)
