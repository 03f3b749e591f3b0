"""Enrollment pages. Every participant is loaded through `participant_for_user` (another
site's participant is a 404); writes need a coordinator or investigator role at the
participant's site, and go through one service each."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _

from trialsite.core.access import access_for, role_required, sites_for_user
from trialsite.core.clock import site_today
from trialsite.core.forms import add_service_errors
from trialsite.core.models import Protocol, Role

from . import selectors, services
from .filters import ScreeningLogFilter
from .forms import (
    ConsentForm,
    ConsentVersionForm,
    ParticipantRegistrationForm,
    RefusalForm,
    ScreeningForm,
    SignoffForm,
    WithdrawalForm,
)
from .models import ConsentVersion, Decision, Participant, ReconsentStatus
from .signals import participant_panels
from .timeline import participant_story

WRITERS = (Role.COORDINATOR, Role.INVESTIGATOR)


def _form_page(request, participant, form, *, title, intro=""):
    context = {"participant": participant, "form": form, "title": title, "intro": intro}
    return render(request, "enrollment/form.html", context)


# --- Registry ------------------------------------------------------------------------------------


# The trial is open-label: every role sees the allocated arm, as the arm rosters show it to
# every role. A blinded trial would name here the roles that may.
ARM_VIEWERS = tuple(Role)


def participant_list(request):
    # NUL cannot reach PostgreSQL in a query; a search longer than any study number finds nothing.
    search = request.GET.get("q", "").replace("\x00", "")[:40]
    page = Paginator(selectors.participant_list(request.user, search=search), 50).get_page(
        request.GET.get("page")
    )
    context = {
        "page": page,
        "participants": selectors.with_list_status(page.object_list),
        "search": search,
        "show_arm": access_for(request.user).has(*ARM_VIEWERS),
        "can_register": access_for(request.user).has(*WRITERS),
    }
    return render(request, "enrollment/participant_list.html", context)


@role_required(*WRITERS)
def participant_register(request):
    sites = sites_for_user(request.user, *WRITERS)
    form = ParticipantRegistrationForm(request.POST or None, sites=sites)
    if request.method == "POST" and form.is_valid():
        try:
            participant = services.participant_register(user=request.user, **form.cleaned_data)
        except services.DuplicateParticipant as exc:
            messages.info(
                request,
                _("This MRN is already registered at this site as %(number)s.")
                % {"number": exc.participant.study_number},
            )
            return redirect("enrollment:participant_detail", exc.participant.study_number)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request, _("Registered as %(number)s.") % {"number": participant.study_number}
            )
            return redirect("enrollment:participant_detail", participant.study_number)
    return _form_page(request, None, form, title=_("Register a patient"))


def participant_detail(request, study_number: str):
    participant = selectors.participant_for_user(request.user, study_number)
    access = access_for(request.user)
    writer_sites = access.site_ids(*WRITERS) or ()
    screenings = list(
        participant.screenings.select_related("screened_by", "signoff__signer").order_by(
            "-screening_date", "-recorded_at"
        )
    )
    can_write = participant.site_id in writer_sites
    # Offered only for a screening that awaits a signature, so that nobody types a password
    # to be refused.
    can_sign = participant.site_id in (
        access.site_ids(Role.INVESTIGATOR) or ()
    ) and selectors.awaits_signoff(screenings[0] if screenings else None)
    consents = list(participant.consents.select_related("version", "obtained_by"))
    open_tasks = list(participant.reconsent_tasks.filter(status=ReconsentStatus.OPEN))
    refusals = list(participant.refusals.order_by("-refused_on"))
    withdrawals = list(participant.withdrawals.all())
    with timezone.override(participant.site.zone):
        context = {
            "participant": participant,
            "show_identifiers": selectors.is_own_site_staff(request.user, participant),
            "can_write": can_write,
            "can_screen": not selectors.is_randomized(participant),
            "can_sign": can_sign,
            "signoff_invalidated": selectors.signoff_invalidated(
                screenings[0] if screenings else None
            ),
            "screenings": selectors.with_results_shown(participant, screenings),
            "consents": consents,
            "open_tasks": open_tasks,
            "refusals": refusals,
            "withdrawals": withdrawals,
            "story": participant_story(
                participant,
                request.user,
                can_write=can_write,
                can_sign=can_sign,
                screenings=screenings,
                consents=consents,
                refusals=refusals,
                withdrawals=withdrawals,
                open_tasks=open_tasks,
            ),
            "panels": [
                panel
                for _receiver, answer in participant_panels.send(
                    sender=Participant,
                    participant=participant,
                    user=request.user,
                    can_write=can_write,
                )
                for panel in answer or []
            ],
        }
        return render(request, "enrollment/participant_detail.html", context)


# --- Screening -----------------------------------------------------------------------------------


@role_required(*WRITERS)
def participant_screen(request, study_number: str):
    participant = selectors.participant_for_user(request.user, study_number, *WRITERS)
    if refusal := selectors.screening_refusal(participant):
        messages.error(request, refusal)
        return redirect("enrollment:participant_detail", participant.study_number)
    protocol = selectors.current_protocol()
    criteria = list(protocol.criteria.all())
    form = ScreeningForm(
        request.POST or None,
        criteria=criteria,
        sex=participant.sex,
        dosing_inputs=selectors.dosing_inputs(protocol),
        input_limits=protocol.rules["input_limits"],
        initial={"screening_date": site_today(participant.site)},
    )
    if request.method == "POST" and form.is_valid():
        try:
            screening = services.participant_screen(
                participant=participant,
                user=request.user,
                answers=form.answers(),
                submission_token=form.cleaned_data["submission_token"],
                protocol=protocol,
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request,
                _("Screening saved: %(decision)s.")
                % {"decision": screening.get_decision_display()},
            )
            return redirect("enrollment:participant_detail", participant.study_number)
    context = {"participant": participant, "form": form, "protocol": protocol}
    return render(request, "enrollment/screening_form.html", context)


def screening_log(request):
    protocol = Protocol.objects.filter(is_current=True).first()
    log = ScreeningLogFilter(
        request.GET or None,
        queryset=selectors.screening_log(request.user),
        request=request,
        protocol=protocol,
    )
    screenings = log.qs
    counts = dict(screenings.order_by().values_list("decision").annotate(n=Count("pk")))
    page = Paginator(screenings, 50).get_page(request.GET.get("page"))
    context = {
        "filter": log,
        "consort": selectors.consort_counts(request.user),
        "page": page,
        "counts": [(label, counts.get(value, 0)) for value, label in Decision.choices],
        "total": sum(counts.values()),
    }
    return render(request, "enrollment/screening_log.html", context)


# --- Consent -------------------------------------------------------------------------------------


@role_required(*WRITERS)
def consent_record(request, study_number: str):
    participant = selectors.participant_for_user(request.user, study_number, *WRITERS)
    with timezone.override(participant.site.zone):
        current = selectors.current_versions(on=site_today(participant.site))
        versions = ConsentVersion.objects.filter(pk__in=[v.pk for v in current.values()])
        form = ConsentForm(request.POST or None, versions=versions)
        if request.method == "POST" and form.is_valid():
            try:
                services.consent_record(
                    participant=participant, user=request.user, **form.cleaned_data
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, _("Consent recorded."))
                return redirect("enrollment:participant_detail", participant.study_number)
        intro = "" if current else _("No consent version is in effect yet.")
        return _form_page(request, participant, form, title=_("Record consent"), intro=intro)


@role_required(*WRITERS)
def consent_refusal(request, study_number: str):
    participant = selectors.participant_for_user(request.user, study_number, *WRITERS)
    form = RefusalForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.consent_refusal_record(
                participant=participant, user=request.user, **form.cleaned_data
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Refusal recorded."))
            return redirect("enrollment:participant_detail", participant.study_number)
    return _form_page(request, participant, form, title=_("Record a refusal to consent"))


@role_required(*WRITERS)
def withdrawal(request, study_number: str):
    participant = selectors.participant_for_user(request.user, study_number, *WRITERS)
    form = WithdrawalForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.withdrawal_record(
                participant=participant, user=request.user, **form.cleaned_data
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Withdrawal recorded."))
            return redirect("enrollment:participant_detail", participant.study_number)
    return _form_page(request, participant, form, title=_("Record withdrawal of consent"))


@role_required(Role.INVESTIGATOR)
def eligibility_signoff(request, study_number: str):
    participant = selectors.participant_for_user(request.user, study_number, Role.INVESTIGATOR)
    screening = selectors.latest_screening(participant)
    # Refused before the password is asked for: the page offers nothing to sign.
    if refusal := selectors.signoff_refusal(screening):
        messages.error(request, refusal)
        return redirect("enrollment:participant_detail", participant.study_number)
    if not selectors.awaits_signoff(screening):
        messages.info(request, _("The latest screening is already signed off."))
        return redirect("enrollment:participant_detail", participant.study_number)
    form = SignoffForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.eligibility_signoff(
                participant=participant, user=request.user, password=form.cleaned_data["password"]
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Eligibility signed off."))
            return redirect("enrollment:participant_detail", participant.study_number)
    context = {
        "participant": participant,
        "screening": selectors.with_results_shown(participant, [screening])[0],
        "form": form,
        "printed_name": request.user.get_full_name() or request.user.get_username(),
        "meaning": services.SIGNOFF_MEANING,
        # Signing again: the invalidated signature is shown beside the new one's form.
        "invalidated": getattr(screening, "signoff", None),
    }
    return render(request, "enrollment/signoff.html", context)


def consent_version_list(request):
    context = {
        "versions": ConsentVersion.objects.select_related("protocol").order_by(
            "language", "-effective_date"
        ),
        "current": selectors.versions_in_force_at(sites_for_user(request.user))
        if Protocol.objects.filter(is_current=True).exists()
        else set(),
        "can_manage": access_for(request.user).has(Role.ADMINISTRATOR),
    }
    return render(request, "enrollment/consent_version_list.html", context)


def consent_version_document(request, pk: int):
    """The approved consent document, for every user of the trial (it names no patient)."""
    version = get_object_or_404(ConsentVersion, pk=pk)
    if not version.document:
        raise Http404
    return FileResponse(
        version.document.open("rb"),
        content_type="application/pdf",
        filename=f"consent-{version.version}-{version.language}.pdf",
    )


@role_required(Role.ADMINISTRATOR)
def consent_version_create(request):
    form = ConsentVersionForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.consent_version_create(user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, _("Consent version added."))
            return redirect("enrollment:consent_version_list")
    return _form_page(request, None, form, title=_("Add a consent version"))


def reconsent_list(request):
    context = {
        "tasks": selectors.open_reconsent_tasks(request.user),
        "version_due": selectors.version_reconsent_due(request.user),
    }
    return render(request, "enrollment/reconsent_list.html", context)
