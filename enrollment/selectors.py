"""Reads of enrollment: participants as a user may see them, consent versions, the gate.

Access: another site's participant is never loaded; a query filter, not a check after the
fact, keeps it out (a 404, so that its existence does not leak).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date

from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _

from trialsite.core.access import access_for, scope_to_sites
from trialsite.core.clock import site_date, site_today
from trialsite.core.models import Protocol, Role
from trialsite.core.protocol import BASELINE_INPUTS, baseline_inputs_needed
from trialsite.core.signatures import SignatureStatus, signature_is_valid

from . import rules
from .models import (
    OFF_STUDY_SCOPES,
    Consent,
    ConsentVersion,
    Decision,
    EligibilityCriterion,
    EligibilitySignoff,
    Participant,
    ReconsentStatus,
    ReconsentTask,
    Screening,
    Withdrawal,
)

SITE_STAFF = (Role.COORDINATOR, Role.INVESTIGATOR)


def current_protocol() -> Protocol:
    return Protocol.objects.get(is_current=True)


def dosing_inputs(protocol: Protocol) -> list[str]:
    """Baseline values the protocol's dose adjustments read (e.g. eGFR), asked at screening."""
    return baseline_inputs_needed(protocol)


# --- Access ---------------------------------------------------------------------------------


def participants_for_user(user, *roles: str) -> QuerySet[Participant]:
    """Participants at the sites where the user holds any of `roles` (any role if none)."""
    return scope_to_sites(Participant.objects.select_related("site"), user, roles=roles)


def participant_for_user(user, study_number: str, *roles: str) -> Participant:
    """The participant if the user may see it (with `roles`, if named); otherwise 404."""
    return get_object_or_404(participants_for_user(user, *roles), study_number=study_number)


def is_own_site_staff(user, participant: Participant) -> bool:
    """Coordinators and investigators of the participant's site: the only ones who see
    identifiers (all-site roles do not)."""
    return participant.site_id in (access_for(user).site_ids(*SITE_STAFF) or ())


def participant_list(user, *, search: str = "") -> QuerySet[Participant]:
    """The participants the user may see, with what the list's status columns read, found by
    a part of their study number (any case). No identifier is read."""
    latest = Screening.objects.filter(participant=OuterRef("pk")).order_by(
        "-screening_date", "-recorded_at"
    )
    latest_consent = Consent.objects.filter(participant=OuterRef("pk")).order_by(
        "-consented_at", "-pk"
    )
    participants = participants_for_user(user)
    if search.strip():
        participants = participants.filter(study_number__icontains=search.strip())
    return (
        participants.only(
            "pk",
            "study_number",
            "sequence",
            "sex",
            "registered_at",
            "site__code",
            "site__time_zone",
            "site__name",
        )
        .annotate(
            latest_screening_pk=Subquery(latest.values("pk")[:1]),
            latest_decision=Subquery(latest.values("decision")[:1]),
            latest_screened_on=Subquery(latest.values("screening_date")[:1]),
            latest_consent_version=Subquery(latest_consent.values("version")[:1]),
            reconsent_open=Exists(
                ReconsentTask.objects.filter(
                    participant=OuterRef("pk"), status=ReconsentStatus.OPEN
                )
            ),
            # The allocation is the arms app's: read through its reverse relation by name.
            arm_code=F("allocation__arm__code"),
            randomized_at=F("allocation__randomized_at"),
        )
        .annotate(
            # Signed and not invalidated since (a change by no service shows on the page).
            signed=Exists(
                EligibilitySignoff.objects.filter(
                    screening_id=OuterRef("latest_screening_pk"),
                    signature_status=SignatureStatus.VALID,
                )
            )
        )
        .order_by("site__code", "sequence")
    )


class ConsentState:
    CURRENT = "current"
    RECONSENT = "reconsent"
    NONE = "none"


class SignoffState:
    SIGNED = "signed"
    AWAITED = "awaited"
    NONE = "none"


def with_list_status(participants) -> list[Participant]:
    """Sets `consent_state`, `signoff_state` and `study_day` on each participant of one page
    of `participant_list`: one query (the consent versions), whatever the number of rows.
    Consent is current when the latest consent is on a version in force at the site today
    and no re-consent is open; the study day counts from the site's date of randomization."""
    participants = list(participants)
    if not participants:
        return participants
    versions = list(
        ConsentVersion.objects.filter(protocol__is_current=True).order_by(
            "language", "-effective_date", "-pk"
        )
    )
    in_force_on: dict[date, set[int]] = {}
    for participant in participants:
        today = site_today(participant.site)
        if today not in in_force_on:
            in_force_on[today] = {v.pk for v in _in_force(versions, today).values()}
        if participant.latest_consent_version is None:
            participant.consent_state = ConsentState.NONE
        elif participant.reconsent_open or (
            participant.latest_consent_version not in in_force_on[today]
        ):
            participant.consent_state = ConsentState.RECONSENT
        else:
            participant.consent_state = ConsentState.CURRENT
        if participant.signed:
            participant.signoff_state = SignoffState.SIGNED
        elif participant.latest_decision == Decision.ELIGIBLE:
            participant.signoff_state = SignoffState.AWAITED
        else:
            participant.signoff_state = SignoffState.NONE
        participant.study_day = (
            (today - site_date(participant.randomized_at, participant.site)).days
            if participant.randomized_at
            else None
        )
    return participants


# --- Screening ----------------------------------------------------------------------------------


def latest_screening(participant: Participant) -> Screening | None:
    return participant.screenings.order_by("-screening_date", "-recorded_at").first()


def is_randomized(participant: Participant) -> bool:
    # The allocation is the arms app's record: read through its reverse relation by name, so
    # that enrollment imports nothing that stands above it. An allocation marked in error
    # still counts: a randomized participant stays randomized (intention to treat).
    return Participant.objects.filter(pk=participant.pk, allocation__isnull=False).exists()


def screening_refusal(participant: Participant) -> str | None:
    """Why the participant may not be screened now; None when they may."""
    if is_randomized(participant):
        refusal = _("%(number)s is randomized: a randomized participant cannot be screened again.")
        return refusal % {"number": participant.study_number}
    return None


def signoff_refusal(screening: Screening | None) -> str | None:
    """Why an investigator cannot sign `screening` (the latest) off; None when it is eligible.
    Decided before the password is asked for, so that nobody signs in vain."""
    if screening is None:
        return _("No screening is recorded: nothing to sign off.")
    if screening.decision != Decision.ELIGIBLE:
        return _("The latest screening is not eligible: nothing to sign off.")
    return None


def awaits_signoff(screening: Screening | None) -> bool:
    """An eligible latest screening with no valid sign-off: never signed, or its signature
    invalidated by a change since (then it is signed again)."""
    return signoff_refusal(screening) is None and not signature_is_valid(
        getattr(screening, "signoff", None)
    )


def signoff_invalidated(screening: Screening | None) -> bool:
    """Signed once, and the signature no longer holds: what was signed changed since."""
    signoff = getattr(screening, "signoff", None)
    return signoff is not None and not signature_is_valid(signoff)


def with_results_shown(participant: Participant, screenings: list[Screening]) -> list[Screening]:
    """Sets `shown_results` on each screening: its stored results, with the consent criteria
    (I4) read from the participant's consent records as they stand now. Three queries."""
    consent_codes: dict[int, set[str]] = {}
    for protocol_id, code in EligibilityCriterion.objects.filter(
        protocol_id__in={s.protocol_id for s in screenings}, rule="informed_consent"
    ).values_list("protocol_id", "code"):
        consent_codes.setdefault(protocol_id, set()).add(code)
    recorded = has_current_consent(participant) if screenings else False
    for screening in screenings:
        screening.shown_results = rules.results_as_of_consent(
            screening.results, consent_codes.get(screening.protocol_id, set()), recorded=recorded
        )
    return screenings


def screening_log(user) -> QuerySet[Screening]:
    """Every screening of every participant the user may see, newest first."""
    return scope_to_sites(
        Screening.objects.select_related("participant__site", "screened_by"),
        user,
        site_field="participant__site",
    ).order_by("-screening_date", "-recorded_at")


@dataclass(frozen=True)
class ConsortCounts:
    assessed: int  # participants screened at least once
    excluded_by_reason: dict[str, int]  # failed criterion -> participants (latest screening)
    incomplete: int
    eligible: int
    declined: int  # participants who refused consent


def consort_counts(user) -> ConsortCounts:
    """The enrollment box of the CONSORT diagram, by each participant's latest screening.
    Three queries, whatever the number of participants."""
    latest_pk = Screening.objects.filter(participant=OuterRef("pk")).order_by(
        "-screening_date", "-recorded_at"
    )
    latest_ids = participants_for_user(user).annotate(latest=Subquery(latest_pk.values("pk")[:1]))
    latest = Screening.objects.filter(
        pk__in=latest_ids.exclude(latest=None).values("latest")
    ).values_list("decision", "failures")
    decisions: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for decision, failures in latest:
        decisions[decision] += 1
        reasons.update(list(failures))  # the codes, once each
    declined = participants_for_user(user).filter(refusals__isnull=False).distinct().count()
    return ConsortCounts(
        assessed=sum(decisions.values()),
        excluded_by_reason=dict(sorted(reasons.items())),
        incomplete=decisions[Decision.INCOMPLETE],
        eligible=decisions[Decision.ELIGIBLE],
        declined=declined,
    )


# --- Consent ------------------------------------------------------------------------------------


def _in_force(versions: list[ConsentVersion], on: date) -> dict[str, ConsentVersion]:
    """Language -> the latest effective date not after `on`, from versions ordered newest
    first within each language."""
    current: dict[str, ConsentVersion] = {}
    for version in versions:
        if version.effective_date <= on:
            current.setdefault(version.language, version)
    return current


def _versions_newest_first(protocol: Protocol | None) -> QuerySet[ConsentVersion]:
    return ConsentVersion.objects.filter(protocol=protocol or current_protocol()).order_by(
        "language", "-effective_date", "-pk"
    )


def current_versions(*, on: date, protocol: Protocol | None = None) -> dict[str, ConsentVersion]:
    """Language -> the version in force on `on`: the latest effective date not after it."""
    return _in_force(list(_versions_newest_first(protocol).filter(effective_date__lte=on)), on)


def versions_in_force_at(sites, *, protocol: Protocol | None = None) -> set[int]:
    """Ids of the versions in force today at any of `sites`, each on its own date: a
    version effective from today is already current in Shanghai while UTC is still on
    yesterday."""
    versions = list(_versions_newest_first(protocol))
    return {
        version.pk
        for today in {site_today(site) for site in sites}
        for version in _in_force(versions, today).values()
    }


def latest_consent(participant: Participant) -> Consent | None:
    return participant.consents.select_related("version").order_by("-consented_at", "-pk").first()


def has_current_consent(participant: Participant, *, on: date | None = None) -> bool:
    consent = latest_consent(participant)
    if consent is None:
        return False
    current = current_versions(on=on or site_today(participant.site))
    return consent.version_id in {v.pk for v in current.values()}


def open_reconsent_tasks(user) -> QuerySet[ReconsentTask]:
    return scope_to_sites(
        ReconsentTask.objects.filter(status=ReconsentStatus.OPEN).select_related(
            "participant__site", "lar_consent__version"
        ),
        user,
        site_field="participant__site",
    ).order_by("participant__site__code", "participant__sequence")


def version_reconsent_due(user, *, on: date | None = None) -> list[tuple[Participant, Consent]]:
    """Participants still on study whose latest consent is on a version no longer current.

    Each participant's site decides which versions are current today (or `on`, if given).
    Three queries whatever the number of participants: versions, participants, consents.
    """
    versions = list(_versions_newest_first(None))
    current_ids_on: dict[date, set[int]] = {}

    def current_ids(site) -> set[int]:
        today = on or site_today(site)
        if today not in current_ids_on:
            current_ids_on[today] = {v.pk for v in _in_force(versions, today).values()}
        return current_ids_on[today]

    participants = (
        participants_for_user(user)
        .filter(consents__isnull=False)
        .exclude(withdrawals__scope__in=OFF_STUDY_SCOPES)
        .distinct()
    )
    latest_by_participant: dict[int, Consent] = {}
    for consent in (
        Consent.objects.filter(participant__in=participants)
        .select_related("version")
        .order_by("participant_id", "-consented_at", "-pk")
    ):
        latest_by_participant.setdefault(consent.participant_id, consent)
    due = []
    for participant in participants.order_by("site__code", "sequence"):
        consent = latest_by_participant[participant.pk]
        if consent.version_id not in current_ids(participant.site):
            due.append((participant, consent))
    return due


# --- The randomization gate ---------------------------------------------------------------------


def randomization_gate_shown(participant: Participant) -> list[str]:
    """`randomization_gate` as a page shows it, worked out once for the participant object
    that the page hands to its panels and its timeline, each of which asks. Never for a
    decision: the service asks `randomization_gate` again under its locks."""
    shown = participant.__dict__.get("_randomization_gate_shown")
    if shown is None:
        shown = participant.__dict__["_randomization_gate_shown"] = randomization_gate(participant)
    return list(shown)


def randomization_gate(participant: Participant) -> list[str]:
    """What stands between the participant and randomization; empty means ready.

    Ready when the latest screening is eligible, consent on the current version is
    recorded, an investigator has signed off that screening, and consent is not withdrawn.
    """
    screening = latest_screening(participant)
    return _gate_missing(
        screening=screening,
        consent_current=has_current_consent(participant),
        inputs_needed=dosing_inputs(screening.protocol) if screening is not None else [],
        withdrawal=Withdrawal.objects.filter(participant=participant)
        .order_by("withdrawn_on")
        .first(),
    )


def _gate_missing(
    *,
    screening: Screening | None,
    consent_current: bool,
    inputs_needed: list[str],
    withdrawal: Withdrawal | None,
) -> list[str]:
    """The gate over values already read, so that one participant's page and a list of many
    decide alike."""
    missing = []
    if screening is None:
        missing.append(_("No screening is recorded."))
    elif screening.decision != Decision.ELIGIBLE:
        missing.append(
            _("The latest screening is %(decision)s, not eligible.")
            % {"decision": screening.get_decision_display().lower()}
        )
    if not consent_current:
        missing.append(_("No consent on the current consent version is recorded."))
    eligible = screening is not None and screening.decision == Decision.ELIGIBLE
    if eligible and signoff_invalidated(screening):
        missing.append(
            _(
                "The investigator's sign-off of the latest screening is invalidated: the "
                "screening changed after signing. It must be signed again."
            )
        )
    elif screening is None or not hasattr(screening, "signoff"):
        missing.append(_("No investigator has signed off the latest screening."))
    if screening is not None:
        # Asked for before the arm is known: a refusal after the draw would reveal the arm.
        for name in inputs_needed:
            if (screening.answers or {}).get(name) in (None, ""):
                missing.append(
                    _("%(value)s is not recorded on the latest screening (the dose plan needs it).")
                    % {"value": BASELINE_INPUTS[name]}
                )
    if withdrawal is not None:
        missing.append(
            _("Consent was withdrawn on %(date)s.") % {"date": withdrawal.withdrawn_on.isoformat()}
        )
    return missing


# --- Hand-offs between roles -------------------------------------------------------------------


def _latest_screening_pk():
    return Subquery(
        Screening.objects.filter(participant=OuterRef("participant"))
        .order_by("-screening_date", "-recorded_at")
        .values("pk")[:1]
    )


def signoffs_awaited(user) -> list[Screening]:
    """The investigator's queue: at the sites where the user is an investigator, each
    participant's latest screening that is eligible and has no valid sign-off (none yet, or
    one invalidated by a change since, by whatever path), of a participant not randomized and
    not withdrawn. Oldest first. One query."""
    eligible = Screening.objects.filter(
        decision=Decision.ELIGIBLE,
        participant__allocation__isnull=True,
        participant__withdrawals__isnull=True,
    ).filter(pk=_latest_screening_pk())
    # Signed ones are checked against their hash here: they wait only between sign-off and
    # randomization, so they are few.
    return [
        screening
        for screening in scope_to_sites(
            eligible.select_related("participant__site", "screened_by", "signoff"),
            user,
            site_field="participant__site",
            roles=(Role.INVESTIGATOR,),
        ).order_by("screening_date", "recorded_at")
        if awaits_signoff(screening)
    ]


def _before_randomization(user, *roles: str) -> QuerySet[Participant]:
    """Participants still on the way to randomization: not randomized, no withdrawal, no
    refusal of consent; with their latest screening's decision."""
    latest = Screening.objects.filter(participant=OuterRef("pk")).order_by(
        "-screening_date", "-recorded_at"
    )
    return (
        participants_for_user(user, *roles)
        .filter(allocation__isnull=True, withdrawals__isnull=True, refusals__isnull=True)
        .annotate(
            latest_decision=Subquery(latest.values("decision")[:1]),
            latest_screened_on=Subquery(latest.values("screening_date")[:1]),
        )
        .only("pk", "study_number", "sequence", "registered_at", "site__code", "site__time_zone")
        .order_by("site__code", "sequence")
    )


def screenings_to_finish(user, *roles: str) -> QuerySet[Participant]:
    """The coordinator's queue: participants on the way to randomization who were never
    screened or whose latest screening is incomplete. One query."""
    return _before_randomization(user, *roles).filter(
        Q(latest_decision__isnull=True) | Q(latest_decision=Decision.INCOMPLETE)
    )


def consents_to_take(user, *roles: str) -> QuerySet[Participant]:
    """The coordinator's queue: participants on the way to randomization with no consent
    recorded, unless their latest screening found them ineligible (consent may be taken
    before or after screening). Re-consents are `open_reconsent_tasks` and
    `version_reconsent_due`. One query."""
    return (
        _before_randomization(user, *roles)
        .filter(consents__isnull=True)
        .filter(
            Q(latest_decision__isnull=True)
            | Q(latest_decision__in=(Decision.ELIGIBLE, Decision.INCOMPLETE))
        )
    )


def ready_to_randomize(user) -> list[Participant]:
    """The coordinator's participants whom the randomization gate lets through and who are
    not randomized yet, by site and number. The same queries whatever their number: the
    candidates, their screenings, their consents, the consent versions, the dose plan's
    inputs per protocol."""
    latest = Screening.objects.filter(participant=OuterRef("pk")).order_by(
        "-screening_date", "-recorded_at"
    )
    signed_eligible = Screening.objects.filter(
        decision=Decision.ELIGIBLE, signoff__signature_status=SignatureStatus.VALID
    ).values("pk")
    # Only those whose latest screening is signed and eligible can pass; the gate decides.
    candidates = list(
        participants_for_user(user, Role.COORDINATOR)
        .filter(allocation__isnull=True, withdrawals__isnull=True)
        .annotate(latest_screening_pk=Subquery(latest.values("pk")[:1]))
        .filter(latest_screening_pk__in=signed_eligible)
        .order_by("site__code", "sequence")
    )
    if not candidates:
        return []
    screenings = Screening.objects.select_related("protocol", "signoff").in_bulk(
        [p.latest_screening_pk for p in candidates]
    )
    latest_consent_of: dict[int, Consent] = {}
    for consent in Consent.objects.filter(participant__in=candidates).order_by(
        "participant_id", "-consented_at", "-pk"
    ):
        latest_consent_of.setdefault(consent.participant_id, consent)
    versions = list(_versions_newest_first(None))
    inputs_of: dict[int, list[str]] = {}
    ready = []
    for participant in candidates:
        screening = screenings[participant.latest_screening_pk]
        if screening.protocol_id not in inputs_of:
            inputs_of[screening.protocol_id] = dosing_inputs(screening.protocol)
        consent = latest_consent_of.get(participant.pk)
        in_force = _in_force(versions, site_today(participant.site)).values()
        missing = _gate_missing(
            screening=screening,
            consent_current=consent is not None and consent.version_id in {v.pk for v in in_force},
            inputs_needed=inputs_of[screening.protocol_id],
            withdrawal=None,  # excluded in the query
        )
        if not missing:
            participant.signoff = screening.signoff
            ready.append(participant)
    return ready
