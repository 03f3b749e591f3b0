from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django.views.i18n import set_language

from arms.models import Arm
from enrollment.models import EligibilityCriterion
from enrollment.selectors import ready_to_randomize, signoffs_awaited

from .core import selectors
from .core.access import access_for, role_required, site_for_user, sites_for_user
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
    # The hand-offs: what waits for this role because another one finished its part.
    if role == Role.INVESTIGATOR:
        context["signoffs_awaited"] = signoffs_awaited(request.user)
    if role == Role.COORDINATOR:
        context["ready_to_randomize"] = ready_to_randomize(request.user)
    if role == Role.ADMINISTRATOR:
        context["heartbeat"] = WorkerHeartbeat.objects.filter(name="worker").first()
    return render(request, ROLE_HOME_TEMPLATES[role], context)


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


@role_required(Role.DATA_MANAGER, Role.MONITOR, Role.ADMINISTRATOR)
def audit_log(request):
    concealed = access_for(request.user).has(Role.ADMINISTRATOR)
    entries = selectors.recent_changes(limit=200, include_concealed=concealed)
    return render(request, "trialsite/audit_log.html", {"entries": entries})


@role_required(Role.ADMINISTRATOR)
def user_list(request):
    users = User.objects.order_by("username").prefetch_related(
        Prefetch("role_assignments", queryset=RoleAssignment.objects.select_related("site"))
    )
    return render(request, "trialsite/user_list.html", {"users": users})


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
