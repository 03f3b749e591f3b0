from datetime import UTC

from django.apps import apps
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django.views.i18n import set_language

from arms.models import Arm
from enrollment.models import EligibilityCriterion, Participant

from . import work_queues
from .access_review import access_review_csv_bytes
from .audit_review import PAGE_SIZE as AUDIT_PAGE_SIZE
from .audit_review import AuditFilterForm, audit_csv_bytes, study_numbers
from .core import selectors
from .core.access import access_for, role_required, site_for_user, sites_for_user
from .core.audit import AuditedModel
from .core.forms import SiteForm
from .core.languages import LANGUAGE_CODES, SESSION_KEY, user_language_set
from .core.models import Protocol, Role, RoleAssignment, WorkerHeartbeat
from .core.services import site_update

ROLE_HOME_TEMPLATES = {role: f"home/{role}.html" for role in Role}


def home(request):
    """Each user lands on the home page of their first role."""
    roles = access_for(request.user).roles
    if not roles:
        return render(request, "home/no_role.html")
    return redirect("role_home", role=roles[0])


def role_home(request, role: str):
    access = access_for(request.user)
    if role not in ROLE_HOME_TEMPLATES:
        raise Http404
    if not access.has(role):
        return redirect("home")
    context = {
        "role": role,
        "role_label": Role(role).label,
        "sites": sites_for_user(request.user, role),
        "protocol": Protocol.objects.filter(is_current=True).first(),
    }
    # The work queues, and the hand-offs (what waits for this role because another one
    # finished its part), read once for both.
    cache: dict = {}
    context["queue_groups"] = work_queues.home_queues(request.user, role, cache)
    if role == Role.INVESTIGATOR:
        context["signoffs_awaited"] = cache["signoffs"]
    if role == Role.COORDINATOR:
        context["ready_to_randomize"] = cache["ready"]
    if role == Role.ADMINISTRATOR:
        context["heartbeat"] = WorkerHeartbeat.objects.filter(name="worker").first()
    return render(request, ROLE_HOME_TEMPLATES[role], context)


def work_queue(request, role: str, key: str):
    """All of one queue of a role's home page, a page at a time."""
    if key not in work_queues.queue_keys(role):
        raise Http404
    if not access_for(request.user).has(role):
        raise PermissionDenied
    spec, items = work_queues.queue_items(request.user, role, key)
    page = Paginator(items, work_queues.LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "role": role,
        "role_label": Role(role).label,
        "spec": spec,
        "page": page,
        "rows": work_queues.rows_of(spec, role, page.object_list),
    }
    return render(request, "home/work_queue.html", context)


def site_list(request):
    sites = sites_for_user(request.user)
    return render(request, "trialsite/site_list.html", {"sites": sites})


def site_detail(request, code: str):
    site = site_for_user(request.user, code)
    staff = (
        RoleAssignment.objects.filter(site=site)
        .select_related("user")
        .order_by("role", "user__username")
    )
    return render(request, "trialsite/site_detail.html", {"site": site, "staff": staff})


@role_required(Role.ADMINISTRATOR)
def site_edit(request, code: str):
    site = site_for_user(request.user, code)
    form = SiteForm(request.POST or None, instance=site)
    if request.method == "POST" and form.is_valid():
        values = {k: v for k, v in form.cleaned_data.items() if k != "reason"}
        try:
            site_update(site=site, user=request.user, reason=form.cleaned_data["reason"], **values)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("Site %(code)s saved.") % {"code": site.code})
            return redirect("site_detail", code=site.code)
    return render(request, "trialsite/site_form.html", {"site": site, "form": form})


def protocol_detail(request):
    protocol = Protocol.objects.filter(is_current=True).first()
    if protocol is None:
        raise Http404(_("No protocol is loaded."))
    arms = Arm.objects.filter(protocol=protocol).prefetch_related("dose_schedules")
    criteria = EligibilityCriterion.objects.filter(protocol=protocol)
    context = {
        "protocol": protocol,
        "arms": arms,
        "criteria": criteria,
        "visits": protocol.visits.all(),
    }
    return render(request, "trialsite/protocol_detail.html", context)


def _audit_trail(request):
    """The audit trail as the filters of the request narrow it, and their form (with any
    error beside its field)."""
    concealed = access_for(request.user).has(Role.ADMINISTRATOR)
    form = AuditFilterForm(request.GET or None, include_concealed=concealed)
    trail = selectors.AuditTrail(form.audit_filter(), study_numbers=study_numbers)
    return form, trail


@role_required(Role.DATA_MANAGER, Role.MONITOR, Role.ADMINISTRATOR)
def audit_log(request):
    form, trail = _audit_trail(request)
    page = Paginator(trail, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"form": form, "page": page, "entries": page.object_list}
    return render(request, "trialsite/audit_log.html", context)


@role_required(Role.DATA_MANAGER, Role.MONITOR, Role.ADMINISTRATOR)
def audit_log_csv(request):
    """The filtered audit trail, every page of it, as CSV: English, times in UTC."""
    form, trail = _audit_trail(request)
    stamp = timezone.now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-trail-{stamp}.csv"'
    with translation.override("en"):
        response.write(audit_csv_bytes(trail))
    return response


def record_history(request, label: str, pk: int):
    """Every version of one record of a participant's data: reached from the participant page,
    by anyone who may see that participant (another site's record is a 404, as is a record
    bound to no participant, such as the concealed randomization lists)."""
    model = _participant_record_model(label)
    participant = _participant_of(model, pk, model.participant_path)
    site_ids = access_for(request.user).site_ids()
    if participant is None or (site_ids is not None and participant.site_id not in site_ids):
        raise Http404
    context = {
        "entries": selectors.record_history(model, pk),
        "model_name": model._meta.verbose_name,
        "pk": pk,
        "study_number": participant.study_number,
        # A participant since deleted is read from their last version: no page to go back to.
        "participant_live": isinstance(participant, Participant),
    }
    return render(request, "trialsite/record_history.html", context)


def _participant_record_model(label: str):
    """The audited model of this label (app_label.model_name) that is bound to a participant;
    otherwise 404."""
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError) as exc:
        raise Http404 from exc
    if not issubclass(model, AuditedModel) or model.participant_path is None:
        raise Http404
    return model


def _participant_of(model, pk: int, path: str):
    """The participant record `pk` belongs to, followed along `path` one relation at a time, so
    that a deleted record (or a deleted record on the way) is followed through its last
    version; a deleted participant is their last version. None if there is no such record."""
    if not path:
        return Participant.objects.filter(pk=pk).first() or _last_version(Participant, pk)
    name, _sep, rest = path.partition("__")
    field = model._meta.get_field(name)
    related_id = model._default_manager.filter(pk=pk).values_list(field.attname, flat=True).first()
    if related_id is None:
        related_id = getattr(_last_version(model, pk), field.attname, None)
    if related_id is None:
        return None
    return _participant_of(field.related_model, related_id, rest)


def _last_version(model, pk: int):
    return model.history.filter(id=pk).order_by("-history_date", "-history_id").first()


@role_required(Role.ADMINISTRATOR)
def user_list(request):
    users = User.objects.order_by("username").prefetch_related(
        Prefetch("role_assignments", queryset=RoleAssignment.objects.select_related("site"))
    )
    return render(request, "trialsite/user_list.html", {"users": users})


@role_required(Role.ADMINISTRATOR)
def access_review(request):
    return render(request, "trialsite/access_review.html", {"rows": selectors.access_review()})


@role_required(Role.ADMINISTRATOR)
def access_review_csv(request):
    """The access review as a CSV for the review's record: accounts and roles only, no patient
    data; every text cell neutralised against spreadsheet formulas."""
    stamp = timezone.now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="access-review-{stamp}.csv"'
    response.write(access_review_csv_bytes(selectors.access_review()))
    return response


@login_not_required  # the login page has the box too
@require_POST
def language_set(request):
    """The language box of the navigation: Django's own choice (a cookie, for the login page),
    and for a logged-in user their preference too, kept with the account."""
    language = request.POST.get("language", "")
    if request.user.is_authenticated and language in LANGUAGE_CODES:
        user_language_set(user=request.user, language=language)
        request.session[SESSION_KEY] = language
    return set_language(request)
