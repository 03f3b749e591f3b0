"""Dosing pages: today's worklist, recording a dose, a participant's timeline, reminders."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.views.decorators.http import require_POST

from enrollment.selectors import participant_for_user
from trialsite.core.access import access_for, role_required, sites_for_user
from trialsite.core.forms import add_service_errors

from . import selectors, services
from .forms import CorrectionForm, DoseRecordForm, VoidForm
from .models import DoseStatus, Reminder
from .rules import plain_amount, plausible_amount_range
from .selectors import WRITERS
from .signals import reminder_sections


def _next_or_timeline(request, dose):
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}):
        return redirect(target)
    return redirect("dosing:participant_timeline", dose.participant.study_number)


@role_required(*WRITERS)
def worklist(request):
    lists = selectors.worklist(request.user)
    return render(request, "dosing/worklist.html", {"lists": lists, "now": timezone.now()})


def _add_errors(form, exc: ValidationError) -> None:
    """The service's messages beside their fields; a time far outside the window brings up
    the confirmation under it."""
    add_service_errors(form, exc)
    given_at_errors = getattr(exc, "error_dict", {}).get("given_at", [])
    if any(e.code == services.FAR_OUTSIDE_WINDOW for e in given_at_errors):
        form.ask_to_confirm()


def _amount_range(dose):
    if dose.planned_amount is None:
        return None
    return plausible_amount_range(
        dose.planned_amount,
        min_fraction=dose.schedule.amount_min_fraction,
        max_fraction=dose.schedule.amount_max_fraction,
    )


@role_required(*WRITERS)
def dose_record(request, pk: int):
    dose = selectors.dose_for_user(request.user, pk, *WRITERS)
    zone = dose.participant.site.zone
    if dose.status not in (DoseStatus.SCHEDULED, DoseStatus.OVERDUE):
        messages.info(request, _("This dose is already recorded."))
        return redirect("dosing:participant_timeline", dose.participant.study_number)
    initial = {
        "outcome": "given",
        "amount": plain_amount(dose.planned_amount),
        "route": dose.schedule.route,
        # Now, never the window's end: accepting the defaults must not make a late dose
        # look on time.
        "given_at": timezone.localtime(timezone.now(), zone).replace(
            second=0, microsecond=0, tzinfo=None
        ),
    }
    form = DoseRecordForm(
        request.POST or None,
        initial=initial,
        zone=zone,
        unit=dose.amount_unit,
        amount_range=_amount_range(dose),
    )
    if request.method == "POST" and form.is_valid():
        try:
            administration = services.dose_record(dose=dose, user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(
                request,
                _("Dose %(n)s of %(number)s recorded.")
                % {"n": dose.sequence, "number": dose.participant.study_number},
            )
            if administration.is_deviation:
                messages.warning(
                    request,
                    _("Given outside its window by %(hours)s h: a protocol deviation.")
                    % {"hours": administration.deviation_hours},
                )
            if administration.infusion_reaction:
                messages.warning(
                    request, _("An infusion reaction was recorded: report it as an adverse event.")
                )
            return _next_or_timeline(request, dose)
    with timezone.override(zone):
        return render(request, "dosing/dose_record.html", {"dose": dose, "form": form})


def _record_in_force(dose):
    return get_object_or_404(dose.administrations.filter(voided_at__isnull=True))


@role_required(*WRITERS)
def administration_correct(request, pk: int):
    dose = selectors.dose_for_user(request.user, pk, *WRITERS)
    administration = _record_in_force(dose)
    zone = dose.participant.site.zone
    fields = ["given_at", "amount", "route", "lot_number", "infusion_reaction", "not_given_reason"]
    initial = {f: getattr(administration, f) for f in fields}
    if administration.given_at:
        initial["given_at"] = timezone.localtime(administration.given_at, zone).replace(tzinfo=None)
    if administration.amount is not None:
        initial["amount"] = plain_amount(administration.amount)
    form = CorrectionForm(
        request.POST or None,
        initial=initial,
        zone=zone,
        unit=dose.amount_unit,
        amount_range=_amount_range(dose),
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        given = administration.outcome == "given"
        changes = {k: data[k] for k in (fields[:-1] if given else fields[-1:])}
        try:
            services.administration_correct(
                administration=administration,
                user=request.user,
                reason=data["reason"],
                confirm_outside_window=data["confirm_outside_window"],
                outside_window_reason=data["outside_window_reason"],
                **changes,
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, _("Correction saved."))
            return redirect("dosing:participant_timeline", dose.participant.study_number)
    with timezone.override(zone):
        return render(
            request,
            "dosing/dose_record.html",
            {"dose": dose, "form": form, "correcting": True, "administration": administration},
        )


@role_required(*WRITERS)
def administration_void(request, pk: int):
    dose = selectors.dose_for_user(request.user, pk, *WRITERS)
    administration = _record_in_force(dose)
    form = VoidForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.administration_void(
                administration=administration, user=request.user, reason=form.cleaned_data["reason"]
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request,
                _("The record of dose %(n)s was voided; the dose is open for recording again.")
                % {"n": dose.sequence},
            )
            return redirect("dosing:participant_timeline", dose.participant.study_number)
    with timezone.override(dose.participant.site.zone):
        return render(
            request,
            "dosing/administration_void.html",
            {"dose": dose, "administration": administration, "form": form},
        )


def participant_timeline(request, study_number: str):
    participant = participant_for_user(request.user, study_number)
    can_write = participant.site_id in (access_for(request.user).site_ids(*WRITERS) or ())
    with timezone.override(participant.site.zone):
        return render(
            request,
            "dosing/participant_timeline.html",
            {
                "participant": participant,
                "timeline": selectors.dose_timeline(participant),
                "can_write": can_write,
            },
        )


TAB_LABELS = {
    "upcoming": _lazy("Upcoming"),
    "sent": _lazy("Sent"),
    "failed": _lazy("Failed"),
    "cancelled": _lazy("Cancelled"),
}


def reminder_list(request):
    tab = request.GET.get("tab", "upcoming")
    if tab not in selectors.REMINDER_TABS:
        tab = "upcoming"
    site_code = request.GET.get("site", "")
    study_number = request.GET.get("participant", "")
    if study_number:
        participant_for_user(request.user, study_number)  # 404 outside the user's sites
    reminders = selectors.reminder_list(
        request.user, tab=tab, site_code=site_code, study_number=study_number
    )[:500]
    counts = selectors.reminder_counts(request.user, site_code=site_code, study_number=study_number)
    context = {
        "tab": tab,
        "tabs": [(name, TAB_LABELS[name], counts[name]) for name in selectors.REMINDER_TABS],
        "reminders": reminders,
        "sites": sites_for_user(request.user),
        "site_code": site_code,
        "study_number": study_number,
        "writer_sites": access_for(request.user).site_ids(*WRITERS) or frozenset(),
        "sections": [
            panel
            for _receiver, answer in reminder_sections.send(
                sender=Reminder, user=request.user, site_code=site_code, study_number=study_number
            )
            for panel in answer or []
        ],
    }
    return render(request, "dosing/reminders.html", context)


@require_POST
@role_required(*WRITERS)
def reminder_resend(request, pk: int):
    reminder = get_object_or_404(selectors.reminders_for_user(request.user, *WRITERS), pk=pk)
    try:
        services.reminder_resend(reminder=reminder, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("The reminder will be sent again within a minute."))
    return redirect(reverse("dosing:reminder_list") + "?tab=failed")
