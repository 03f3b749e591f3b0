"""Outcomes pages: a participant's visits and the visit form."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from enrollment.selectors import participant_for_user
from trialsite.core.access import access_for, role_required
from trialsite.core.forms import add_service_errors

from . import rules, selectors, services
from .forms import VisitForm
from .models import VisitStatus
from .selectors import VISIT_WRITERS

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
    form = VisitForm(request.POST or None, initial={"vital_status": "alive"})
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
