"""The CONSORT flow diagram (HTML and SVG), enrollment over time with the screen-failure
reasons, and the record-status grid."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from trialsite.core.access import role_required
from trialsite.core.models import Role

from . import chart, selectors, svg

# Every role: site-held roles see their own sites' participants, the others all sites.
OVERSEERS = tuple(Role)


@role_required(*OVERSEERS)
def consort(request):
    context = {"consort": selectors.consort(request.user), "now": timezone.now()}
    return render(request, "oversight/consort.html", context)


@role_required(*OVERSEERS)
def consort_svg(request):
    """The same diagram as a standalone SVG file, drawn by a template (text auto-escaped)."""
    context = {"consort": selectors.consort(request.user), "now": timezone.now()}
    context["layout"] = svg.layout(context["consort"])
    drawing = render_to_string("oversight/consort.svg", context, request=request)
    response = HttpResponse(drawing, content_type="image/svg+xml; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="consort.svg"'
    return response


# The grid's columns, in the order of selectors.grid_cells.
def _columns() -> list[str]:
    return [
        _("Screening"),
        _("Consent"),
        _("Sign-off"),
        _("Allocation"),
        _("Doses given/total"),
        _("Visits"),
        _("Adverse events"),
        _("End of study"),
    ]


def _links(participant) -> list[str]:
    number = participant.study_number
    detail = reverse("enrollment:participant_detail", args=[number])
    allocation = (
        reverse("arms:allocation_detail", args=[number]) if participant.arm_code else detail
    )
    return [
        detail,
        detail,
        detail,
        allocation,
        reverse("dosing:participant_timeline", args=[number]),
        reverse("outcomes:participant_visits", args=[number]),
        reverse("outcomes:ae_list", args=[number]),
        reverse("outcomes:participant_visits", args=[number]),
    ]


@role_required(*OVERSEERS)
def record_status(request):
    page = Paginator(selectors.record_status(request.user), selectors.GRID_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    columns = _columns()
    rows = [
        {
            "participant": participant,
            "cells": [
                {"cell": cell, "url": url, "heading": heading}
                for cell, url, heading in zip(
                    selectors.grid_cells(participant), _links(participant), columns, strict=True
                )
            ],
        }
        for participant in page.object_list
    ]
    context = {"page": page, "rows": rows, "columns": columns}
    return render(request, "oversight/record_status.html", context)


@role_required(*OVERSEERS)
def enrollment(request):
    over_time = selectors.enrollment_over_time(request.user)
    reasons, ineligible = selectors.screen_failure_reasons(request.user)
    context = {
        "charts": [
            {
                "key": "arm",
                "title": _("Randomized per arm, cumulative by week"),
                "data": over_time.by_arm,
                "layout": chart.layout(over_time.by_arm),
            },
            {
                "key": "site",
                "title": _("Randomized per site, cumulative by week"),
                "data": over_time.by_site,
                "layout": chart.layout(over_time.by_site),
            },
        ],
        "reasons": reasons,
        "ineligible": ineligible,
        "now": timezone.now(),
    }
    return render(request, "oversight/enrollment.html", context)
