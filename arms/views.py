"""Randomization pages. The lists are the trial administrator's alone, and each look at one
is logged; rosters and allocations are site-scoped in the query (another site's is a 404)."""

import csv
import uuid

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django_tables2 import RequestConfig

from enrollment.selectors import latest_screening, participant_for_user, randomization_gate
from trialsite.core.access import access_for, role_required
from trialsite.core.forms import add_service_errors
from trialsite.core.models import Protocol, Role
from trialsite.core.proxies import client_address

from . import rules, selectors, services
from .filters import RosterFilter
from .forms import GenerateListForm, MarkInErrorForm, RandomizeForm, UploadListForm
from .models import Allocation, Arm, ListAction, ListEntry, RandomizationList
from .tables import RosterTable

ALL_ROLES = tuple(Role)
SITE_STAFF = (Role.COORDINATOR, Role.INVESTIGATOR)
ROSTER_PAGE_SIZE = 50
# A generated list has thousands of entries per stratum.
ENTRIES_PAGE_SIZE = 500


def _current_protocol() -> Protocol:
    protocol = Protocol.objects.filter(is_current=True).first()
    if protocol is None:
        raise Http404(_("No protocol is loaded."))
    return protocol


def _logged_list(request, pk: int, action: str) -> RandomizationList:
    """The list, and a row saying who looked at it, how, and when."""
    randomization_list = get_object_or_404(
        RandomizationList.objects.select_related("protocol", "created_by"), pk=pk
    )
    services.list_access_record(
        randomization_list=randomization_list,
        user=request.user,
        action=action,
        address=client_address(request),
    )
    return randomization_list


# --- Lists (administrator) -----------------------------------------------------------------------


@role_required(Role.ADMINISTRATOR)
def list_index(request):
    protocol = _current_protocol()
    lists = RandomizationList.objects.filter(protocol=protocol).annotate(
        entries=Count("strata__entries"), used=Count("strata__entries__allocation")
    )
    active = selectors.active_list(protocol)
    context = {
        "lists": lists,
        "active": active,
        "stock": selectors.strata_stock(active) if active else [],
        "generate_form": GenerateListForm(),
    }
    return render(request, "arms/list_index.html", context)


def _stored_list_response(request, form, service, success: str, **arguments):
    """Calls a list service with the form's key and note: the redirect to the new draft, or
    to the list that the same form stored before; None when the errors go onto the form."""
    try:
        randomization_list = service(
            user=request.user,
            note=form.cleaned_data["note"],
            idempotency_key=form.cleaned_data["idempotency_key"],
            **arguments,
        )
    except services.ListAlreadyStored as exc:
        messages.info(request, exc.messages[0])
        return redirect("arms:list_detail", pk=exc.randomization_list.pk)
    except ValidationError as exc:
        add_service_errors(form, exc)
        return None
    counts = randomization_list.strata.aggregate(
        strata=Count("pk", distinct=True), entries=Count("entries")
    )
    messages.success(request, success % {"pk": randomization_list.pk, **counts})
    return redirect("arms:list_detail", pk=randomization_list.pk)


@role_required(Role.ADMINISTRATOR)
def list_generate(request):
    form = GenerateListForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        response = _stored_list_response(
            request,
            form,
            services.randomization_list_generate,
            _(
                "Draft list %(pk)s generated: %(entries)s entries in %(strata)s strata. "
                "Check its report before use."
            ),
            per_stratum=form.cleaned_data["per_stratum"],
        )
        if response:
            return response
    return render(request, "arms/list_form.html", {"form": form, "title": _("Generate a list")})


@role_required(Role.ADMINISTRATOR)
def list_upload(request):
    form = UploadListForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        response = _stored_list_response(
            request,
            form,
            services.randomization_list_upload,
            _(
                "List %(pk)s stored as a draft: %(entries)s entries in %(strata)s strata. "
                "Check its report before use."
            ),
            csv_text=form.cleaned_data["file"],
        )
        if response:
            return response
    return render(
        request, "arms/list_form.html", {"form": form, "title": _("Upload a statistician's list")}
    )


@role_required(Role.ADMINISTRATOR)
def list_detail(request, pk: int):
    """The report before use, the stock per stratum, and the fingerprint."""
    randomization_list = _logged_list(request, pk, ListAction.REPORT)
    context = {
        "randomization_list": randomization_list,
        "reports": selectors.list_report(randomization_list),
        "arms": list(selectors.protocol_ratios(randomization_list.protocol)),
        "stock": selectors.strata_stock(randomization_list),
        "fingerprint": (
            selectors.list_fingerprint(randomization_list) if randomization_list.is_locked else None
        ),
        "access_log": randomization_list.access_log.select_related("user")[:20],
    }
    return render(request, "arms/list_detail.html", context)


@role_required(Role.ADMINISTRATOR)
def list_entries(request, pk: int):
    randomization_list = _logged_list(request, pk, ListAction.VIEW)
    entries = (
        ListEntry.objects.filter(stratum__randomization_list=randomization_list)
        .select_related("stratum", "arm", "allocation__participant")
        .order_by("stratum__code", "sequence")
    )
    page = Paginator(entries, ENTRIES_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request, "arms/list_entries.html", {"randomization_list": randomization_list, "page": page}
    )


@role_required(Role.ADMINISTRATOR)
def list_export(request, pk: int):
    """The canonical text, exactly what the SHA-256 is computed over."""
    randomization_list = _logged_list(request, pk, ListAction.EXPORT)
    text = rules.canonical_text(selectors.list_entries(randomization_list))
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="randomization-list-{randomization_list.pk}.csv"'
    )
    return response


@require_POST
@role_required(Role.ADMINISTRATOR)
def list_activate(request, pk: int):
    randomization_list = get_object_or_404(RandomizationList, pk=pk)
    try:
        services.randomization_list_activate(
            user=request.user, randomization_list=randomization_list
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("The list is active: randomization draws from it."))
    return redirect("arms:list_detail", pk=pk)


@role_required(Role.ADMINISTRATOR)
def balance(request):
    protocol = _current_protocol()
    report = selectors.balance_report(protocol)
    context = {
        "report": report,
        "overall_rows": [report.overall],
        "in_error": selectors.in_error_count(protocol),
        "ratio": ":".join(str(r) for r in selectors.protocol_ratios(protocol).values()),
    }
    return render(request, "arms/balance.html", context)


# --- Randomization (site staff) ------------------------------------------------------------------


@role_required(*SITE_STAFF)
def randomize(request, study_number: str):
    participant = participant_for_user(request.user, study_number, *SITE_STAFF)
    existing = Allocation.objects.filter(participant=participant).first()
    if existing is not None and request.method == "GET":
        return redirect("arms:allocation_detail", study_number=study_number)
    form = RandomizeForm(request.POST or None, initial={"idempotency_key": uuid.uuid4()})
    if request.method == "POST" and form.is_valid():
        try:
            allocation = services.participant_randomize(
                participant=participant,
                user=request.user,
                idempotency_key=form.cleaned_data["idempotency_key"],
            )
        except services.AlreadyRandomized as exc:
            messages.info(request, exc.messages[0])
            return redirect("arms:allocation_detail", study_number=study_number)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            stock = selectors.stratum_stock(allocation.stratum)
            if stock.low:
                messages.warning(
                    request,
                    _(
                        "Fewer than 10%% of the entries of stratum %(stratum)s are left "
                        "(%(remaining)s). The trial administrator should provide more."
                    )
                    % {"stratum": allocation.stratum.code, "remaining": stock.remaining},
                )
            return redirect("arms:allocation_detail", study_number=study_number)
    screening = latest_screening(participant)
    context = {
        "participant": participant,
        "form": form,
        "missing": randomization_gate(participant),
        "severity": (screening.answers or {}).get("severity", "") if screening else "",
    }
    return render(request, "arms/randomize.html", context)


@role_required(*ALL_ROLES)
def allocation_detail(request, study_number: str):
    allocation = selectors.allocation_for_user(request.user, study_number)
    context = {
        "allocation": allocation,
        "can_mark_in_error": access_for(request.user).has(Role.ADMINISTRATOR),
    }
    return render(request, "arms/allocation_detail.html", context)


@role_required(Role.ADMINISTRATOR)
def allocation_mark_in_error(request, study_number: str):
    allocation = selectors.allocation_for_user(request.user, study_number)
    form = MarkInErrorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.allocation_mark_in_error(
                allocation=allocation, user=request.user, reason=form.cleaned_data["reason"]
            )
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                form.add_error(None, exc)
            else:
                form.add_error("reason", exc)
        else:
            messages.success(request, _("The randomization is marked in error."))
            return redirect("arms:allocation_detail", study_number=study_number)
    return render(
        request, "arms/allocation_in_error.html", {"allocation": allocation, "form": form}
    )


# --- Rosters ------------------------------------------------------------------------------------


def _roster_parts(request, arm_code: str | None):
    protocol = _current_protocol()
    arm = get_object_or_404(Arm, protocol=protocol, code=arm_code) if arm_code else None
    queryset = selectors.roster(request.user)
    if arm is not None:
        queryset = queryset.filter(arm=arm)
    roster_filter = RosterFilter(
        request.GET or None,
        queryset=queryset,
        user=request.user,
        protocol=protocol,
        fixed_arm=arm,
    )
    return protocol, arm, roster_filter


@role_required(*ALL_ROLES)
def roster(request, arm_code: str | None = None):
    protocol, arm, roster_filter = _roster_parts(request, arm_code)
    table = RosterTable(roster_filter.qs)
    if arm is not None:
        table.columns.hide("arm")
    RequestConfig(request, paginate={"per_page": ROSTER_PAGE_SIZE}).configure(table)
    table.progress = selectors.roster_clinical_progress(list(table.page.object_list.data))
    context = {
        "arm": arm,
        "arms": Arm.objects.filter(protocol=protocol),
        "filter": roster_filter,
        "table": table,
        "csv_query": request.GET.urlencode(),
    }
    return render(request, "arms/roster.html", context)


@role_required(*ALL_ROLES)
def roster_csv(request, arm_code: str | None = None):
    """The filtered, sorted roster, every page of it, with the columns of the table."""
    _protocol, arm, roster_filter = _roster_parts(request, arm_code)
    rows = list(roster_filter.qs)
    table = RosterTable(rows, progress=selectors.roster_clinical_progress(rows))
    if arm is not None:
        table.columns.hide("arm")
    RequestConfig(request, paginate=False).configure(table)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = f"roster-{arm.code}" if arm else "roster"
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    writer = csv.writer(response)
    # An export reads the same whatever the page's language: English headers and values.
    with translation.override("en"):
        for row in table.as_values():
            writer.writerow(row)
    return response
