"""The work queues of the role home pages: what waits for this role at their sites, read
through each app's own selectors (what is overdue, due today or out of window is decided
there, once), composed here because only the composition knows every app.

Each queue has a count linking to the list it counts (an app's own page where one shows
exactly these rows, otherwise the queue's own page) and rows linking to the form where the
work is done, for a user who may do it there. A home page costs the same number of queries
whatever the number of participants: each queue is one to a few queries, rows included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from dosing import selectors as dosing
from enrollment import selectors as enrollment
from enrollment.models import Decision
from outcomes import selectors as outcomes
from trialsite.core.access import access_for
from trialsite.core.clock import site_time_text
from trialsite.core.models import Role

# Rows shown on the home page; the count links to all of them.
HOME_ROWS = 5
LIST_PAGE_SIZE = 50

WRITERS = (Role.COORDINATOR, Role.INVESTIGATOR)


@dataclass(frozen=True)
class Row:
    study_number: str
    site_code: str
    what: str
    when: str = ""
    action_url: str = ""  # the form where the work is done; empty for a user who may not
    action: str = ""


@dataclass(frozen=True)
class QueueSpec:
    key: str
    title: str
    empty: str
    # (user, role, cache) -> the queue's items, scoped to the sites where the user holds role.
    read: Callable[..., Sequence]
    # (item, may_act) -> its row.
    row: Callable[..., Row]
    # Roles whose holders may do the work (at their own sites, where the queue is scoped).
    actors: tuple[str, ...] = WRITERS
    # An app's own page listing exactly these items; None: the queue's own page.
    list_url: Callable[[], str] | None = None
    # Its rows are shown by a panel of the home page already (the hand-offs).
    panel: str = ""


@dataclass
class Queue:
    spec: QueueSpec
    role: str
    items: Sequence
    count: int
    rows: list[Row] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def title(self) -> str:
        return str(self.spec.title)

    @property
    def list_url(self) -> str:
        if self.spec.panel:
            return f"{reverse('role_home', args=[self.role])}#{self.spec.panel}"
        if self.spec.list_url is not None:
            return self.spec.list_url()
        return reverse("work_queue", args=[self.role, self.key])


def _count(items: Sequence) -> int:
    return items.count() if isinstance(items, QuerySet) else len(items)


def rows_of(spec: QueueSpec, role: str, items) -> list[Row]:
    may_act = role in spec.actors
    return [spec.row(item, may_act) for item in items]


# --- What each queue reads ---------------------------------------------------------------------


def _worklist(user, role: str, cache: dict):
    """Today's doses at the role's sites: read once for the two dose queues."""
    if "worklist" not in cache:
        cache["worklist"] = dosing.worklist(user, roles=(role,))
    return cache["worklist"]


def _doses_due_today(user, role, cache):
    return [dose for entry in _worklist(user, role, cache) for dose in entry.due]


def _doses_overdue(user, role, cache):
    return [dose for entry in _worklist(user, role, cache) for dose in entry.overdue]


def _reconsents(user, role, cache):
    """Open re-consent tasks and consents on a version no longer in force, as the re-consent
    list shows them, at the role's sites."""
    site_ids = access_for(user).site_ids(role)
    tasks = [("task", task.participant, task) for task in enrollment.open_reconsent_tasks(user)]
    due = [("version", p, consent) for p, consent in enrollment.version_reconsent_due(user)]
    return [item for item in tasks + due if site_ids is None or item[1].site_id in site_ids]


def _ready(user, role, cache):
    if "ready" not in cache:
        cache["ready"] = enrollment.ready_to_randomize(user)
    return cache["ready"]


def _signoffs(user, role, cache):
    if "signoffs" not in cache:
        cache["signoffs"] = list(enrollment.signoffs_awaited(user))
    return cache["signoffs"]


def _sae_reports(user, role, cache):
    now = timezone.now()
    return [
        outcomes.with_report_clock(event, now) for event in outcomes.open_sae_reports(user, role)
    ]


# --- How each item reads as a row -------------------------------------------------------------


def _url(name: str, *args, may_act: bool) -> str:
    return reverse(name, args=args) if may_act else ""


def _screening_row(participant, may_act):
    if participant.latest_decision == Decision.INCOMPLETE:
        what = _("Screening incomplete (%(date)s)") % {
            "date": participant.latest_screened_on.isoformat()
        }
    else:
        what = _("Registered, not screened")
    return Row(
        participant.study_number,
        participant.site.code,
        what,
        action_url=_url("enrollment:participant_screen", participant.study_number, may_act=may_act),
        action=_("Screen"),
    )


def _consent_row(participant, may_act):
    decision = participant.latest_decision
    # The screening's state, beside the missing consent.
    what = (
        _("Latest screening: %(decision)s") % {"decision": Decision(decision).label.lower()}
        if decision
        else _("Not screened yet")
    )
    return Row(
        participant.study_number,
        participant.site.code,
        what,
        action_url=_url("enrollment:consent_record", participant.study_number, may_act=may_act),
        action=_("Record consent"),
    )


def _reconsent_row(item, may_act):
    kind, participant, record = item
    if kind == "task":
        what = _("Consented by a representative: re-consent in person when able")
    else:
        what = _("Consented on version %(version)s, no longer in force") % {
            "version": record.version.version
        }
    return Row(
        participant.study_number,
        participant.site.code,
        what,
        action_url=_url("enrollment:consent_record", participant.study_number, may_act=may_act),
        action=_("Record consent"),
    )


def _ready_row(participant, may_act):
    return Row(
        participant.study_number,
        participant.site.code,
        _("Eligible, consented and signed off"),
        action_url=_url("arms:randomize", participant.study_number, may_act=may_act),
        action=_("Randomize"),
    )


def _signoff_row(screening, may_act):
    participant = screening.participant
    return Row(
        participant.study_number,
        participant.site.code,
        _("Screened eligible on %(date)s") % {"date": screening.screening_date.isoformat()},
        action_url=_url(
            "enrollment:eligibility_signoff", participant.study_number, may_act=may_act
        ),
        action=_("Sign off"),
    )


def _dose_row(dose, may_act):
    participant = dose.participant
    return Row(
        participant.study_number,
        participant.site.code,
        _("%(product)s dose %(number)s, %(amount)s")
        % {
            "product": dose.schedule.localized_product(),
            "number": dose.sequence,
            "amount": dose.amount_display,
        },
        when=site_time_text(dose.due_at, participant.site),
        action_url=_url("dosing:dose_record", dose.pk, may_act=may_act),
        action=_("Record"),
    )


def _visit_name(visit) -> str:
    return _("Visit %(code)s, %(name)s") % {
        "code": visit.definition.code,
        "name": visit.definition.localized_name(),
    }


def _window(visit) -> str:
    return _("window %(start)s to %(end)s") % {
        "start": visit.window_start.isoformat(),
        "end": visit.window_end.isoformat(),
    }


def _visit_row(visit, may_act):
    return Row(
        visit.participant.study_number,
        visit.participant.site.code,
        _visit_name(visit),
        when=_window(visit),
        action_url=_url("outcomes:visit_record", visit.pk, may_act=may_act),
        action=_("Record"),
    )


def _out_of_window_row(visit, may_act):
    days = visit.days_outside_window or 0
    late = (
        _("%(n)s day(s) late") % {"n": days} if days > 0 else _("%(n)s day(s) early") % {"n": -days}
    )
    return Row(
        visit.participant.study_number,
        visit.participant.site.code,
        f"{_visit_name(visit)}: {late}",
        when=_window(visit),
        action_url=_url("outcomes:visit_detail", visit.pk, may_act=True),
        action=_("Open the visit"),
    )


def _sae_row(event, may_act):
    participant = event.participant
    return Row(
        participant.study_number,
        participant.site.code,
        _("%(term)s, CTCAE grade %(grade)s") % {"term": event.term, "grade": event.grade},
        when=getattr(event, "time_left", ""),
        action_url=_url("outcomes:ae_report", event.pk, may_act=may_act),
        action=_("Record the report"),
    )


def _causality_row(event, may_act):
    participant = event.participant
    return Row(
        participant.study_number,
        participant.site.code,
        _("%(term)s, CTCAE grade %(grade)s, onset %(date)s")
        % {"term": event.term, "grade": event.grade, "date": event.onset_date.isoformat()},
        action_url=_url("outcomes:ae_causality", event.pk, may_act=may_act),
        # An assessment whose signature a change to the event invalidated is signed again.
        action=_("Assess and sign again")
        if getattr(event, "causality", None) is not None
        else _("Assess causality"),
    )


def _end_row(end, may_act):
    participant = end.participant
    return Row(
        participant.study_number,
        participant.site.code,
        _("Study ended on %(date)s: %(reason)s")
        % {"date": end.ended_on.isoformat(), "reason": end.get_reason_display()},
        action_url=_url("outcomes:end_of_study_sign", participant.study_number, may_act=may_act),
        action=_("Sign"),
    )


def _worklist_url() -> str:
    return reverse("dosing:worklist")


SPECS = {
    spec.key: spec
    for spec in [
        QueueSpec(
            "screenings",
            gettext_lazy("Screenings to finish"),
            gettext_lazy("No screening is waiting to be finished."),
            lambda user, role, cache: enrollment.screenings_to_finish(user, role),
            _screening_row,
        ),
        QueueSpec(
            "consents",
            gettext_lazy("Consents to take"),
            gettext_lazy("Nobody is waiting for consent."),
            lambda user, role, cache: enrollment.consents_to_take(user, role),
            _consent_row,
        ),
        QueueSpec(
            "reconsents",
            gettext_lazy("Re-consents to take"),
            gettext_lazy("Nobody needs to be consented again."),
            _reconsents,
            _reconsent_row,
            list_url=lambda: reverse("enrollment:reconsent_list"),
        ),
        QueueSpec(
            "randomize",
            gettext_lazy("Ready to randomize"),
            gettext_lazy("Nobody is ready to randomize."),
            _ready,
            _ready_row,
            panel="ready-to-randomize-heading",
        ),
        QueueSpec(
            "doses-today",
            gettext_lazy("Doses due today"),
            gettext_lazy("No dose is due today."),
            _doses_due_today,
            _dose_row,
            list_url=_worklist_url,
        ),
        QueueSpec(
            "visits-today",
            gettext_lazy("Visits due today"),
            gettext_lazy("No visit window is open today."),
            lambda user, role, cache: outcomes.visits_due_today(user, role),
            _visit_row,
        ),
        QueueSpec(
            "doses-overdue",
            gettext_lazy("Overdue doses"),
            gettext_lazy("No dose is overdue."),
            _doses_overdue,
            _dose_row,
            list_url=_worklist_url,
        ),
        QueueSpec(
            "visits-overdue",
            gettext_lazy("Overdue visits (window closed, no record)"),
            gettext_lazy("No visit is overdue."),
            lambda user, role, cache: outcomes.visits_overdue(user, role),
            _visit_row,
        ),
        QueueSpec(
            "signoffs",
            gettext_lazy("Sign-offs awaiting you"),
            gettext_lazy("No screening is waiting for your sign-off."),
            _signoffs,
            _signoff_row,
            actors=(Role.INVESTIGATOR,),
            panel="signoffs-awaited-heading",
        ),
        QueueSpec(
            "sae-reports",
            gettext_lazy("SAE reports due"),
            gettext_lazy("No serious adverse event waits to be reported."),
            _sae_reports,
            _sae_row,
            list_url=lambda: reverse("outcomes:ae_open_reports"),
        ),
        QueueSpec(
            "causality",
            gettext_lazy("Adverse events without a signed causality assessment"),
            gettext_lazy("Every adverse event is assessed."),
            lambda user, role, cache: outcomes.causality_awaited(user, role),
            _causality_row,
            actors=(Role.INVESTIGATOR,),
        ),
        QueueSpec(
            "ends-to-sign",
            gettext_lazy("Ends of study to sign"),
            gettext_lazy("No end of study waits for your signature."),
            lambda user, role, cache: outcomes.ends_to_sign(user, role),
            _end_row,
            actors=(Role.INVESTIGATOR,),
        ),
        QueueSpec(
            "out-of-window",
            gettext_lazy("Visits done out of window"),
            gettext_lazy("No visit was done out of its window."),
            lambda user, role, cache: outcomes.visits_out_of_window(user, role),
            _out_of_window_row,
        ),
    ]
}

# Each role's queues on its home page, under their headings.
HOME_QUEUES: dict[str, list[tuple[str, list[str]]]] = {
    Role.COORDINATOR: [
        (
            gettext_lazy("Enrollment"),
            ["screenings", "consents", "reconsents", "randomize"],
        ),
        (
            gettext_lazy("Today at your sites"),
            ["doses-today", "visits-today", "doses-overdue", "visits-overdue"],
        ),
    ],
    Role.INVESTIGATOR: [
        (
            gettext_lazy("Waiting for you"),
            ["signoffs", "sae-reports", "causality", "ends-to-sign", "doses-overdue"],
        ),
    ],
    Role.DATA_MANAGER: [
        (gettext_lazy("Incomplete forms"), ["screenings", "visits-overdue", "causality"]),
        (gettext_lazy("Protocol deviations"), ["out-of-window"]),
    ],
}


def queue_keys(role: str) -> list[str]:
    return [key for _heading, keys in HOME_QUEUES.get(role, []) for key in keys]


def home_queues(user, role: str, cache: dict | None = None) -> list[tuple[str, list[Queue]]]:
    """The role's queues under their headings, each with its count and first rows."""
    cache = {} if cache is None else cache
    groups = []
    for heading, keys in HOME_QUEUES.get(role, []):
        queues = []
        for key in keys:
            spec = SPECS[key]
            items = spec.read(user, role, cache)
            queue = Queue(spec, role, items, _count(items))
            if not spec.panel:
                queue.rows = rows_of(spec, role, items[:HOME_ROWS])
            queues.append(queue)
        groups.append((str(heading), queues))
    return groups


def queue_items(user, role: str, key: str) -> tuple[QueueSpec, Sequence]:
    spec = SPECS[key]
    return spec, spec.read(user, role, {})
