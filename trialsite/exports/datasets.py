"""What the export holds: each dataset (one CSV, one row per record) and its columns.

The data dictionary is written from these definitions (`dictionary.py`), so a column cannot be
added here without being described there. Column names are stable snake_case: an analysis
script written against one bundle reads the next.

A column is a code (with its allowed values, from the model's choices or the protocol), a
number, a date, a time, a yes/no or text. Unanswered is an empty cell, never 0 or "No"; a
measurement not done says "not_done" in its `_status` column. Columns marked `identifier`
(name, MRN, contact, date of birth) are written only in an identified export; `free_text`
columns only when free text is asked for. How a column is read and written is in
`columns.py`.

The export reads the same whatever the page's language (README: languages), so column
descriptions and the labels only the CSV carries are English literals; a dataset's
description is also shown on the export page, so it is translated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Min
from django.utils.translation import gettext_lazy as _

from arms.models import Allocation, AllocationStatus, Arm
from dosing.models import (
    Administration,
    AdministrationOutcome,
    DoseStatus,
    Reminder,
    ReminderKind,
    ReminderStatus,
    ScheduledDose,
)
from enrollment.models import (
    Consent,
    ConsentRefusal,
    CriterionKind,
    Decision,
    EligibilityCriterion,
    EligibilitySignoff,
    Participant,
    Screening,
    Severity,
    Sex,
    Signer,
    Withdrawal,
    WithdrawalScope,
)
from outcomes import rules as outcome_rules
from outcomes.models import (
    ActionTaken,
    AdverseEvent,
    AeOutcome,
    ChestCtChange,
    CtcaeGrade,
    EndOfStudy,
    EndReason,
    InterventionRelatedness,
    Relatedness,
    RespiratorySupport,
    ScheduledVisit,
    VisitDefinition,
    VisitRecord,
    VisitReminder,
    VisitReminderStatus,
    VisitStatus,
    VitalStatus,
)
from outcomes.selectors import endpoints_from
from trialsite.core.selectors import audited_models
from trialsite.core.signatures import SignatureStatus, signature_state

from .columns import (
    BOOLEAN,
    CHUNK,
    CODE,
    DATE,
    DATETIME,
    DECIMAL,
    INTEGER,
    TEXT,
    Column,
    Dataset,
    ExportContext,
    as_date,
    as_decimal,
    chunked,
    dig,
    participant_columns,
    recorded_columns,
    username,
    zone_of,
)
from .deidentify import DateMode, age_shown

# Whether a measurement was made: the empty cell is "not answered yet".
MEASUREMENT_STATUS = (("done", "Done"), ("not_done", "Not done"))
CRITERION_OUTCOMES = (
    ("met", "Met: the criterion does not stand in the way"),
    ("failed", "Failed: the inclusion does not hold or the exclusion is present"),
    ("unanswered", "Unanswered"),
    ("not_asked", "Not asked of this participant"),
    ("pending", "Pending: decided by another record (consent)"),
)
AUDIT_ACTIONS = (("created", "Created"), ("changed", "Changed"), ("deleted", "Deleted"))
HISTORY_TYPES = {"+": "created", "~": "changed", "-": "deleted"}


def signature_columns(path: str = "", prefix: str = "") -> tuple[Column, ...]:
    """What binds an electronic signature (the record at `path`) to what it signed, and
    whether it still holds: a fresh hash of the values now against the stored one, so that a
    change made by any path shows. Empty when there is no such record (an event not assessed)."""
    record = dig(path) if path else (lambda r: r)

    def state(row):
        signed = record(row)
        return signature_state(signed) if signed is not None else None

    return (
        Column(
            f"{prefix}signature_status",
            CODE,
            "Whether the signature holds: valid, invalidated (what it signed changed after "
            "signing; it is to be signed again) or unsigned.",
            state,
            choices=SignatureStatus.choices,
        ),
        Column(
            f"{prefix}signature_hash",
            TEXT,
            "SHA-256 (hex) of the canonical form of the values signed.",
            lambda row: (record(row).content_hash or None) if record(row) else None,
        ),
        Column(
            f"{prefix}signature_form",
            TEXT,
            "The tag of the canonical form the hash was computed over.",
            lambda row: (record(row).content_form or None) if record(row) else None,
        ),
        Column(
            f"{prefix}signature_invalidated_at",
            DATETIME,
            "When the signature was marked invalidated (UTC); empty when it was not marked.",
            lambda row: record(row).invalidated_at if record(row) else None,
        ),
        Column(
            f"{prefix}signature_invalidated_reason",
            TEXT,
            "Why the signature was marked invalidated.",
            lambda row: record(row).invalidated_reason if record(row) else None,
            free_text=True,
        ),
    )


def arm_codes():
    return Arm.objects.filter(protocol__is_current=True).values_list("code", "name")


def criterion_codes():
    return EligibilityCriterion.objects.filter(protocol__is_current=True).values_list(
        "code", "text"
    )


def visit_codes():
    return VisitDefinition.objects.filter(protocol__is_current=True).values_list("code", "name")


# --- The datasets ---------------------------------------------------------------------------


def _screenings(ctx: ExportContext):
    queryset = Screening.objects.select_related(
        "participant__site", "protocol", "screened_by"
    ).order_by("participant__site__code", "participant__sequence", "screening_date", "pk")
    queryset = ctx.without_identifiers(ctx.scoped(queryset, "participant__site"), "participant__")
    return queryset.iterator(chunk_size=CHUNK)


def _answer(key: str, convert=lambda v: v):
    return lambda screening: convert((screening.answers or {}).get(key))


SCREENING_LOG = Dataset(
    name="screening_log",
    description=_("Every screening against the protocol's criteria; a re-screening is a row."),
    columns=(
        Column("screening_id", INTEGER, "The screening's number.", dig("pk")),
        *participant_columns("participant"),
        Column(
            "protocol_version",
            TEXT,
            "Protocol version screened against.",
            dig("protocol.version"),
        ),
        Column("screening_date", DATE, "Date of screening (site date).", dig("screening_date")),
        Column(
            "decision",
            CODE,
            "Eligibility decided from the answers.",
            dig("decision"),
            choices=Decision.choices,
        ),
        Column(
            "failed_criteria",
            TEXT,
            "Codes of the failed criteria, separated by semicolons.",
            lambda s: ";".join(sorted(s.failures or {})) or None,
        ),
        Column(
            "severity",
            CODE,
            "COVID-19 severity recorded at screening.",
            _answer("severity"),
            choices=Severity.choices,
        ),
        Column(
            "diagnosis_date",
            DATE,
            "Date of diagnosis of severe or critical COVID-19.",
            _answer("diagnosis_date", as_date),
        ),
        Column("height_cm", DECIMAL, "Height.", _answer("height_cm", as_decimal), unit="cm"),
        Column("weight_kg", DECIMAL, "Weight.", _answer("weight_kg", as_decimal), unit="kg"),
        Column(
            "egfr",
            DECIMAL,
            "Baseline eGFR.",
            _answer("egfr", as_decimal),
            unit="mL/min/1.73 m2",
        ),
        Column(
            "nyha_class",
            INTEGER,
            "NYHA class of heart failure (0: none).",
            _answer("nyha_class"),
        ),
        Column(
            "ckd_stage", INTEGER, "Chronic kidney disease stage (0: none).", _answer("ckd_stage")
        ),
        Column(
            "child_pugh",
            INTEGER,
            "Child-Pugh score (0: no chronic liver disease).",
            _answer("child_pugh"),
        ),
        Column(
            "screened_by",
            TEXT,
            "Username of the staff member who screened.",
            username("screened_by"),
        ),
        *recorded_columns(by="screened_by")[:1],
    ),
    records=_screenings,
    participant_id=dig("participant_id"),
    zone=zone_of("participant"),
)


def _criterion_answers(ctx: ExportContext):
    for screening in _screenings(ctx):
        answers = screening.answers or {}
        for result in screening.results or []:
            answer = answers.get(result.get("code"))
            yield SimpleNamespace(
                screening=screening,
                participant=screening.participant,
                participant_id=screening.participant_id,
                code=result.get("code"),
                kind=result.get("kind"),
                outcome=result.get("outcome"),
                # Only a yes/no answer is the criterion's own; computed criteria read their
                # inputs (in the screening log), and the date of birth is never exported.
                answer=answer if isinstance(answer, bool) else None,
                reason=result.get("reason"),
            )


ELIGIBILITY_ANSWERS = Dataset(
    name="eligibility_answers",
    description=_(
        "One row per criterion per screening: its outcome and, for yes/no "
        "criteria, the answer given."
    ),
    columns=(
        Column("screening_id", INTEGER, "The screening (screening_log).", dig("screening.pk")),
        *participant_columns("participant"),
        Column(
            "criterion_code",
            CODE,
            "The protocol's code of the criterion.",
            dig("code"),
            choices=criterion_codes,
        ),
        Column(
            "criterion_kind",
            CODE,
            "Inclusion or exclusion.",
            dig("kind"),
            choices=CriterionKind.choices,
        ),
        Column(
            "outcome",
            CODE,
            "How the criterion was decided.",
            dig("outcome"),
            choices=CRITERION_OUTCOMES,
        ),
        Column(
            "answer",
            BOOLEAN,
            "The yes/no answer; empty when not answered or not a yes/no criterion.",
            dig("answer"),
        ),
        Column(
            "reason",
            TEXT,
            "The reason shown to the coordinator (may quote typed text).",
            dig("reason"),
            free_text=True,
        ),
    ),
    records=_criterion_answers,
    participant_id=dig("participant_id"),
    zone=zone_of("participant"),
)


def _participants(ctx: ExportContext):
    queryset = Participant.objects.select_related("site").order_by("site__code", "sequence")
    queryset = ctx.without_identifiers(ctx.scoped(queryset, "site"), "")
    return queryset.iterator(chunk_size=CHUNK)


def _age(participant):
    registered = participant.registered_at.astimezone(participant.site.zone).date()
    return age_shown(participant.date_of_birth, registered)


PARTICIPANTS = Dataset(
    name="participants",
    description=_("Every registered participant."),
    columns=(
        *participant_columns(""),
        Column("sex", CODE, "Sex.", dig("sex"), choices=Sex.choices),
        Column(
            "age_years",
            INTEGER,
            "Age in whole years at registration; every age over 89 is written 90+.",
            _age,
            unit="years",
        ),
        Column(
            "registered_at",
            DATETIME,
            "When the participant was registered (UTC).",
            dig("registered_at"),
        ),
        Column("name", TEXT, "Name (identified export only).", dig("name"), identifier=True),
        Column(
            "mrn",
            TEXT,
            "Hospital record number (identified export only).",
            dig("mrn"),
            identifier=True,
        ),
        Column(
            "contact",
            TEXT,
            "Contact (identified export only).",
            dig("contact"),
            identifier=True,
        ),
        Column(
            "date_of_birth",
            DATE,
            "Date of birth (identified export only).",
            dig("date_of_birth"),
            identifier=True,
        ),
    ),
    records=_participants,
    participant_id=dig("pk"),
    zone=zone_of(""),
)


def _consents(ctx: ExportContext):
    queryset = Consent.objects.select_related(
        "participant__site", "version", "obtained_by"
    ).order_by("participant__site__code", "participant__sequence", "consented_at", "pk")
    queryset = ctx.without_identifiers(ctx.scoped(queryset, "participant__site"), "participant__")
    if not ctx.options.identified:
        queryset = queryset.defer("lar_name", "witness_name")
    return queryset.iterator(chunk_size=CHUNK)


CONSENTS = Dataset(
    name="consents",
    description=_("Every consent recorded, by the participant or a representative."),
    columns=(
        Column("consent_id", INTEGER, "The consent's number.", dig("pk")),
        *participant_columns("participant"),
        Column("consent_version", TEXT, "Version of the consent document.", dig("version.version")),
        Column(
            "consent_language",
            CODE,
            "Language of the consent document.",
            dig("version.language"),
            choices=settings.LANGUAGES,
        ),
        Column("consented_at", DATETIME, "When consent was given (UTC).", dig("consented_at")),
        Column("signer", CODE, "Who signed.", dig("signer"), choices=Signer.choices),
        Column(
            "lar_relationship",
            TEXT,
            "The representative's relationship to the participant.",
            dig("lar_relationship"),
            free_text=True,
        ),
        Column("witness_needed", BOOLEAN, "An impartial witness attended.", dig("witness_needed")),
        Column("copy_given", BOOLEAN, "A copy was given to the signer.", dig("copy_given")),
        Column(
            "obtained_by",
            TEXT,
            "Username of the staff member who took consent.",
            username("obtained_by"),
        ),
        Column("recorded_at", DATETIME, "When the consent was entered (UTC).", dig("recorded_at")),
        Column(
            "lar_name",
            TEXT,
            "The representative's name (identified export only).",
            dig("lar_name"),
            identifier=True,
        ),
        Column(
            "witness_name",
            TEXT,
            "The witness's name (identified export only).",
            dig("witness_name"),
            identifier=True,
        ),
    ),
    records=_consents,
    participant_id=dig("participant_id"),
    zone=zone_of("participant"),
)


def _refusals(ctx: ExportContext):
    queryset = ConsentRefusal.objects.select_related("participant__site", "recorded_by").order_by(
        "participant__site__code", "participant__sequence", "refused_on", "pk"
    )
    queryset = ctx.without_identifiers(ctx.scoped(queryset, "participant__site"), "participant__")
    return queryset.iterator(chunk_size=CHUNK)


CONSENT_REFUSALS = Dataset(
    name="consent_refusals",
    description=_("Patients (or their representatives) who declined consent."),
    columns=(
        Column("refusal_id", INTEGER, "The refusal's number.", dig("pk")),
        *participant_columns("participant"),
        Column("refused_on", DATE, "Date of the refusal (site date).", dig("refused_on")),
        Column("reason", TEXT, "The reason given.", dig("reason"), free_text=True),
        Column(
            "recorded_by",
            TEXT,
            "Username of the staff member who entered it.",
            username("recorded_by"),
        ),
    ),
    records=_refusals,
    participant_id=dig("participant_id"),
    zone=zone_of("participant"),
)


def _signoffs(ctx: ExportContext):
    queryset = EligibilitySignoff.objects.select_related(
        "screening__participant__site", "signer"
    ).order_by("screening__participant__site__code", "screening__participant__sequence", "pk")
    queryset = ctx.scoped(queryset, "screening__participant__site")
    queryset = ctx.without_identifiers(queryset, "screening__participant__")
    return queryset.iterator(chunk_size=CHUNK)


SIGNOFFS = Dataset(
    name="signoffs",
    description=_("The investigator's electronic signature on an eligible screening."),
    columns=(
        Column("signoff_id", INTEGER, "The sign-off's number.", dig("pk")),
        Column(
            "screening_id", INTEGER, "The screening signed (screening_log).", dig("screening_id")
        ),
        *participant_columns("screening.participant"),
        Column("signed_by", TEXT, "Username of the investigator.", username("signer")),
        Column("printed_name", TEXT, "The investigator's printed name.", dig("printed_name")),
        Column("signed_at", DATETIME, "When it was signed (UTC).", dig("signed_at")),
        Column("meaning", TEXT, "The meaning of the signature, as shown.", dig("meaning")),
        *signature_columns(),
    ),
    records=_signoffs,
    participant_id=dig("screening.participant_id"),
    zone=zone_of("screening.participant"),
)


def _withdrawals(ctx: ExportContext):
    queryset = Withdrawal.objects.select_related("participant__site", "recorded_by").order_by(
        "participant__site__code", "participant__sequence", "withdrawn_on", "pk"
    )
    queryset = ctx.without_identifiers(ctx.scoped(queryset, "participant__site"), "participant__")
    return queryset.iterator(chunk_size=CHUNK)


WITHDRAWALS = Dataset(
    name="withdrawals",
    description=_("Withdrawals of consent and what they stop."),
    columns=(
        Column("withdrawal_id", INTEGER, "The withdrawal's number.", dig("pk")),
        *participant_columns("participant"),
        Column("scope", CODE, "What stops.", dig("scope"), choices=WithdrawalScope.choices),
        Column("withdrawn_on", DATE, "Date of the withdrawal (site date).", dig("withdrawn_on")),
        Column("reason", TEXT, "The reason given.", dig("reason"), free_text=True),
        Column(
            "recorded_by",
            TEXT,
            "Username of the staff member who entered it.",
            username("recorded_by"),
        ),
    ),
    records=_withdrawals,
    participant_id=dig("participant_id"),
    zone=zone_of("participant"),
)


def _allocations(ctx: ExportContext):
    queryset = Allocation.objects.select_related(
        "participant__site", "arm", "stratum", "randomized_by"
    ).order_by("participant__site__code", "participant__sequence")
    queryset = ctx.without_identifiers(ctx.scoped(queryset, "participant__site"), "participant__")
    return queryset.iterator(chunk_size=CHUNK)


ALLOCATIONS = Dataset(
    name="allocations",
    description=_("Randomizations; one in error stays, marked so."),
    columns=(
        *participant_columns("participant"),
        Column("arm_code", CODE, "The arm allocated.", dig("arm.code"), choices=arm_codes),
        Column("stratum_code", TEXT, "The stratum (site and severity).", dig("stratum.code")),
        Column(
            "severity",
            CODE,
            "Severity stratum.",
            dig("stratum.severity"),
            choices=Severity.choices,
        ),
        Column(
            "randomization_number",
            TEXT,
            "The randomization number.",
            dig("randomization_number"),
        ),
        Column(
            "randomized_at",
            DATETIME,
            "When the participant was randomized (UTC).",
            dig("randomized_at"),
        ),
        Column(
            "randomized_by",
            TEXT,
            "Username of the staff member who randomized.",
            username("randomized_by"),
        ),
        Column(
            "status",
            CODE,
            "Valid, or in error.",
            dig("status"),
            choices=AllocationStatus.choices,
        ),
        Column(
            "error_reason",
            TEXT,
            "Why the allocation is in error.",
            dig("error_reason"),
            free_text=True,
        ),
        Column(
            "marked_in_error_at",
            DATETIME,
            "When it was marked in error (UTC).",
            dig("marked_in_error_at"),
        ),
    ),
    records=_allocations,
    participant_id=dig("participant_id"),
    zone=zone_of("participant"),
)


def _scheduled_doses(ctx: ExportContext):
    queryset = ScheduledDose.objects.select_related("participant__site", "schedule__arm").order_by(
        "participant__site__code", "participant__sequence", "due_at", "schedule_id", "sequence"
    )
    queryset = ctx.without_identifiers(ctx.scoped(queryset, "participant__site"), "participant__")
    return queryset.iterator(chunk_size=CHUNK)


SCHEDULED_DOSES = Dataset(
    name="scheduled_doses",
    description=_("Every dose a participant was to receive, made with the allocation."),
    columns=(
        Column("dose_id", INTEGER, "The dose's number.", dig("pk")),
        *participant_columns("participant"),
        Column(
            "arm_code",
            CODE,
            "The arm of the schedule.",
            dig("schedule.arm.code"),
            choices=arm_codes,
        ),
        Column("product", TEXT, "The product given.", dig("schedule.product")),
        Column("route", TEXT, "The route.", dig("schedule.route")),
        Column("dose_number", INTEGER, "The dose's number in its schedule.", dig("sequence")),
        Column(
            "study_day",
            INTEGER,
            "Study day of the dose (day 0: randomization).",
            dig("study_day"),
            unit="days",
        ),
        Column("due_at", DATETIME, "When the dose is due (UTC).", dig("due_at")),
        Column("window_start", DATETIME, "When its window opens (UTC).", dig("window_start")),
        Column("window_end", DATETIME, "The last instant on time (UTC).", dig("window_end")),
        Column(
            "planned_amount",
            DECIMAL,
            "The planned amount, in amount_unit.",
            dig("planned_amount"),
        ),
        Column("amount_unit", TEXT, "Unit of the amount.", dig("amount_unit")),
        Column("amount_note", TEXT, "How the amount was worked out.", dig("amount_note")),
        Column("status", CODE, "Where the dose stands.", dig("status"), choices=DoseStatus.choices),
    ),
    records=_scheduled_doses,
    participant_id=dig("participant_id"),
    zone=zone_of("participant"),
)


def _administrations(ctx: ExportContext):
    queryset = Administration.objects.select_related(
        "scheduled_dose__participant__site", "given_by", "recorded_by", "voided_by"
    ).order_by(
        "scheduled_dose__participant__site__code",
        "scheduled_dose__participant__sequence",
        "scheduled_dose__due_at",
        "pk",
    )
    queryset = ctx.scoped(queryset, "scheduled_dose__participant__site")
    queryset = ctx.without_identifiers(queryset, "scheduled_dose__participant__")
    return queryset.iterator(chunk_size=CHUNK)


ADMINISTRATIONS = Dataset(
    name="administrations",
    description=_("What happened to each dose: given or not; voided records stay, marked."),
    columns=(
        Column("administration_id", INTEGER, "The record's number.", dig("pk")),
        Column("dose_id", INTEGER, "The dose (scheduled_doses).", dig("scheduled_dose_id")),
        *participant_columns("scheduled_dose.participant"),
        Column(
            "outcome",
            CODE,
            "Given or not.",
            dig("outcome"),
            choices=AdministrationOutcome.choices,
        ),
        Column("given_at", DATETIME, "When it was given (UTC).", dig("given_at")),
        Column("amount", DECIMAL, "The amount given, in amount_unit.", dig("amount")),
        Column("amount_unit", TEXT, "Unit of the amount.", dig("amount_unit")),
        Column("route", TEXT, "The route.", dig("route")),
        Column("lot_number", TEXT, "Lot or batch number.", dig("lot_number")),
        Column("given_by", TEXT, "Username of who gave it.", username("given_by")),
        Column(
            "infusion_reaction",
            BOOLEAN,
            "An infusion reaction was recorded.",
            dig("infusion_reaction"),
        ),
        Column(
            "not_given_reason",
            TEXT,
            "Why it was not given.",
            dig("not_given_reason"),
            free_text=True,
        ),
        Column(
            "deviation_hours",
            DECIMAL,
            "Hours outside the window; empty when on time.",
            dig("deviation_hours"),
            unit="hours",
        ),
        Column(
            "outside_window_reason",
            TEXT,
            "Why it was given so far outside the window.",
            dig("outside_window_reason"),
            free_text=True,
        ),
        *recorded_columns(),
        Column(
            "voided_at",
            DATETIME,
            "When the record was voided (UTC); empty: in force.",
            dig("voided_at"),
        ),
        Column("voided_by", TEXT, "Username of who voided it.", username("voided_by")),
        Column("void_reason", TEXT, "Why it was voided.", dig("void_reason"), free_text=True),
    ),
    records=_administrations,
    participant_id=dig("scheduled_dose.participant_id"),
    zone=zone_of("scheduled_dose.participant"),
)


def _reminders(ctx: ExportContext):
    queryset = Reminder.objects.select_related("participant__site").order_by(
        "participant__site__code", "participant__sequence", "due_at", "pk"
    )
    queryset = ctx.without_identifiers(ctx.scoped(queryset, "participant__site"), "participant__")
    return queryset.iterator(chunk_size=CHUNK)


DOSE_REMINDERS = Dataset(
    name="dose_reminders",
    description=_("The reminders and overdue alerts of each dose, and whether they went."),
    columns=(
        Column("reminder_id", INTEGER, "The reminder's number.", dig("pk")),
        Column("dose_id", INTEGER, "The dose (scheduled_doses).", dig("scheduled_dose_id")),
        *participant_columns("participant"),
        Column(
            "kind",
            CODE,
            "Before the dose, or overdue.",
            dig("kind"),
            choices=ReminderKind.choices,
        ),
        Column(
            "lead_hours",
            INTEGER,
            "Hours before the dose (0 for an overdue alert).",
            dig("lead_hours"),
            unit="hours",
        ),
        Column("due_at", DATETIME, "When it is to be sent (UTC).", dig("due_at")),
        Column("status", CODE, "Delivery status.", dig("status"), choices=ReminderStatus.choices),
        Column("attempts", INTEGER, "Delivery attempts.", dig("attempts")),
        Column("sent_at", DATETIME, "When it was sent (UTC).", dig("sent_at")),
        Column(
            "cancelled_reason",
            TEXT,
            "Why it was cancelled.",
            dig("cancelled_reason"),
            free_text=True,
        ),
    ),
    records=_reminders,
    participant_id=dig("participant_id"),
    zone=zone_of("participant"),
)


def _visit_reminders(ctx: ExportContext):
    queryset = VisitReminder.objects.select_related(
        "scheduled_visit__participant__site", "scheduled_visit__definition"
    ).order_by(
        "scheduled_visit__participant__site__code",
        "scheduled_visit__participant__sequence",
        "due_at",
        "pk",
    )
    queryset = ctx.scoped(queryset, "scheduled_visit__participant__site")
    queryset = ctx.without_identifiers(queryset, "scheduled_visit__participant__")
    return queryset.iterator(chunk_size=CHUNK)


VISIT_REMINDERS = Dataset(
    name="visit_reminders",
    description=_("The reminder of each visit to the site's coordinators, and whether it went."),
    columns=(
        Column("reminder_id", INTEGER, "The reminder's number.", dig("pk")),
        Column("visit_id", INTEGER, "The visit (visits).", dig("scheduled_visit_id")),
        *participant_columns("scheduled_visit.participant"),
        Column(
            "visit_code",
            CODE,
            "The protocol's visit.",
            dig("scheduled_visit.definition.code"),
            choices=visit_codes,
        ),
        Column("due_at", DATETIME, "When it is to be sent (UTC).", dig("due_at")),
        Column(
            "status", CODE, "Delivery status.", dig("status"), choices=VisitReminderStatus.choices
        ),
        Column("attempts", INTEGER, "Delivery attempts.", dig("attempts")),
        Column("sent_at", DATETIME, "When it was sent (UTC).", dig("sent_at")),
        Column(
            "cancelled_reason",
            TEXT,
            "Why it was cancelled.",
            dig("cancelled_reason"),
            free_text=True,
        ),
    ),
    records=_visit_reminders,
    participant_id=dig("scheduled_visit.participant_id"),
    zone=zone_of("scheduled_visit.participant"),
)


def _visits(ctx: ExportContext):
    queryset = ScheduledVisit.objects.select_related(
        "participant__site", "definition", "record", "record__recorded_by"
    ).order_by("participant__site__code", "participant__sequence", "study_day")
    queryset = ctx.without_identifiers(ctx.scoped(queryset, "participant__site"), "participant__")
    return queryset.iterator(chunk_size=CHUNK)


def _measured_status(name: str):
    record = dig("record")

    def status(visit):
        found = record(visit)
        if found is None:
            return None
        if getattr(found, f"{name}_not_done"):
            return "not_done"
        value = getattr(found, name)
        return None if value is None or value == "" else "done"

    return status


# Each measured finding: (name, kind, description, unit, choices)
MEASUREMENTS = (
    (
        "who_score",
        INTEGER,
        "WHO clinical progression scale (0 uninfected to 10 dead).",
        "points",
        (),
    ),
    ("spo2", INTEGER, "Oxygen saturation.", "%", ()),
    ("respiratory_support", CODE, "Respiratory support.", "", RespiratorySupport.choices),
    ("pao2", DECIMAL, "Arterial oxygen partial pressure.", "mmHg", ()),
    ("fio2", DECIMAL, "Fraction of inspired oxygen.", "fraction (0.21-1.00)", ()),
    ("lymphocytes", DECIMAL, "Lymphocyte count.", "10^9/L", ()),
    ("crp", DECIMAL, "C-reactive protein.", "mg/L", ()),
    ("il6", DECIMAL, "Interleukin-6.", "pg/mL", ()),
    ("chest_ct", CODE, "Change on chest CT.", "", ChestCtChange.choices),
)
assert tuple(m[0] for m in MEASUREMENTS) == tuple(outcome_rules.MEASURED_FIELDS)


def _measurement_columns() -> Iterator[Column]:
    for name, kind, description, unit, choices in MEASUREMENTS:
        yield Column(name, kind, description, dig(f"record.{name}"), unit=unit, choices=choices)
        yield Column(
            f"{name}_status",
            CODE,
            "Whether the finding before this column was measured; empty: not answered.",
            _measured_status(name),
            choices=MEASUREMENT_STATUS,
        )
        yield Column(
            f"{name}_not_done_reason",
            TEXT,
            "Why the finding was not done.",
            dig(f"record.{name}_not_done_reason"),
            free_text=True,
        )


VISITS = Dataset(
    name="visits",
    description=_("Each scheduled follow-up visit, with what was found when it was recorded."),
    columns=(
        Column("visit_id", INTEGER, "The scheduled visit's number.", dig("pk")),
        *participant_columns("participant"),
        Column(
            "visit_code",
            CODE,
            "The protocol's visit.",
            dig("definition.code"),
            choices=visit_codes,
        ),
        Column(
            "study_day",
            INTEGER,
            "Planned study day (day 0: randomization).",
            dig("study_day"),
            unit="days",
        ),
        Column("due_on", DATE, "Planned date (site date).", dig("due_on")),
        Column("window_start", DATE, "First day of the window (site date).", dig("window_start")),
        Column("window_end", DATE, "Last day of the window (site date).", dig("window_end")),
        Column(
            "status", CODE, "Where the visit stands.", dig("status"), choices=VisitStatus.choices
        ),
        Column(
            "days_outside_window",
            INTEGER,
            "Negative when early, positive when late; empty when on time.",
            dig("days_outside_window"),
            unit="days",
        ),
        Column(
            "stopped_reason",
            TEXT,
            "Why the visit is not required.",
            dig("stopped_reason"),
            free_text=True,
        ),
        Column(
            "visit_date",
            DATE,
            "Date of the visit (site date); empty: not recorded.",
            dig("record.visit_date"),
        ),
        *_measurement_columns(),
        Column(
            "pf_ratio",
            INTEGER,
            "PaO2/FiO2, from the recorded values.",
            dig("record.pf_ratio"),
            unit="mmHg",
        ),
        Column(
            "discharged_on",
            DATE,
            "Hospital discharge date; empty while in hospital.",
            dig("record.discharged_on"),
        ),
        Column(
            "vital_status",
            CODE,
            "Alive or dead at the visit.",
            dig("record.vital_status"),
            choices=VitalStatus.choices,
        ),
        Column("date_of_death", DATE, "Date of death.", dig("record.date_of_death")),
        *recorded_columns("record.recorded_at", "record.recorded_by"),
    ),
    records=_visits,
    participant_id=dig("participant_id"),
    zone=zone_of("participant"),
)


def _adverse_events(ctx: ExportContext):
    queryset = (
        AdverseEvent.objects.select_related("participant__site", "causality__signer", "recorded_by")
        # What the causality's signature signed, to check it against its hash.
        .prefetch_related("causality__relatedness")
        .order_by("participant__site__code", "participant__sequence", "onset_date", "pk")
    )
    queryset = ctx.without_identifiers(ctx.scoped(queryset, "participant__site"), "participant__")
    return queryset.iterator(chunk_size=CHUNK)


ADVERSE_EVENTS = Dataset(
    name="adverse_events",
    description=_("Adverse events from randomization to day 28, with the signed causality."),
    columns=(
        Column("adverse_event_id", INTEGER, "The event's number.", dig("pk")),
        *participant_columns("participant"),
        Column("term", TEXT, "The event's term.", dig("term")),
        Column("onset_date", DATE, "Onset (site date).", dig("onset_date")),
        Column("end_date", DATE, "End (site date); empty: ongoing.", dig("end_date")),
        Column("grade", CODE, "CTCAE grade.", dig("grade"), choices=CtcaeGrade.choices),
        Column("death_date", DATE, "Date of death (grade 5).", dig("death_date")),
        Column("serious", BOOLEAN, "Serious adverse event.", dig("serious")),
        *(
            Column(f"criterion_{code}", BOOLEAN, label, dig(f"criterion_{code}"))
            for code, label in outcome_rules.SERIOUSNESS_CRITERIA
        ),
        Column(
            "action_taken",
            CODE,
            "Action taken with the study treatment.",
            dig("action_taken"),
            choices=ActionTaken.choices,
        ),
        Column("outcome", CODE, "Outcome of the event.", dig("outcome"), choices=AeOutcome.choices),
        Column(
            "administration_id",
            INTEGER,
            "The dose record it reports (administrations).",
            dig("administration_id"),
        ),
        Column(
            "sae_clock_started_at",
            DATETIME,
            "When it was recorded serious (UTC).",
            dig("sae_clock_started_at"),
        ),
        Column(
            "reported_on",
            DATE,
            "Reported to sponsor and ethics on (site date).",
            dig("reported_on"),
        ),
        Column(
            "causality_expected",
            BOOLEAN,
            "Expected per the reference safety information; empty: not assessed.",
            dig("causality.expected"),
        ),
        Column(
            "causality_signed_at",
            DATETIME,
            "When the causality was signed (UTC).",
            dig("causality.signed_at"),
        ),
        Column(
            "causality_signed_by",
            TEXT,
            "Username of the investigator who signed the causality.",
            username("causality.signer"),
        ),
        Column(
            "causality_printed_name",
            TEXT,
            "The investigator's printed name.",
            dig("causality.printed_name"),
        ),
        Column(
            "causality_meaning",
            TEXT,
            "The meaning of the causality's signature, as shown.",
            dig("causality.meaning"),
        ),
        *signature_columns("causality", prefix="causality_"),
        *recorded_columns(),
    ),
    records=_adverse_events,
    participant_id=dig("participant_id"),
    zone=zone_of("participant"),
)


def _relatedness(ctx: ExportContext):
    # In participant order, as every participant's dataset is: the ODM file walks them
    # side by side, participant by participant.
    queryset = InterventionRelatedness.objects.select_related(
        "assessment__adverse_event__participant__site"
    ).order_by(
        "assessment__adverse_event__participant__site__code",
        "assessment__adverse_event__participant__sequence",
        "assessment__adverse_event_id",
        "pk",
    )
    queryset = ctx.scoped(queryset, "assessment__adverse_event__participant__site")
    queryset = ctx.without_identifiers(queryset, "assessment__adverse_event__participant__")
    return queryset.iterator(chunk_size=CHUNK)


AE_RELATEDNESS = Dataset(
    name="adverse_event_relatedness",
    description=_("The investigator's relatedness of each event to each intervention."),
    columns=(
        Column(
            "adverse_event_id",
            INTEGER,
            "The event (adverse_events).",
            dig("assessment.adverse_event_id"),
        ),
        *participant_columns("assessment.adverse_event.participant"),
        Column(
            "dose_id",
            INTEGER,
            "The infusion (scheduled_doses); empty: the whole course.",
            dig("scheduled_dose_id"),
        ),
        Column(
            "intervention", TEXT, "The intervention, as shown to the investigator.", dig("label")
        ),
        Column(
            "relatedness", CODE, "How related.", dig("relatedness"), choices=Relatedness.choices
        ),
    ),
    records=_relatedness,
    participant_id=dig("assessment.adverse_event.participant_id"),
    zone=zone_of("assessment.adverse_event.participant"),
)


def _ends(ctx: ExportContext):
    queryset = EndOfStudy.objects.select_related(
        "participant__site", "recorded_by", "signer"
    ).order_by("participant__site__code", "participant__sequence")
    queryset = ctx.without_identifiers(ctx.scoped(queryset, "participant__site"), "participant__")
    return queryset.iterator(chunk_size=CHUNK)


END_OF_STUDY = Dataset(
    name="end_of_study",
    description=_("How and when each participant's study ended."),
    columns=(
        *participant_columns("participant"),
        Column("reason", CODE, "Why the study ended.", dig("reason"), choices=EndReason.choices),
        Column("ended_on", DATE, "Date (for a death, the date of death).", dig("ended_on")),
        Column("details", TEXT, "Details.", dig("details"), free_text=True),
        Column(
            "adverse_event_id",
            INTEGER,
            "The fatal adverse event (adverse_events).",
            dig("adverse_event_id"),
        ),
        *recorded_columns(),
        Column(
            "signed_by", TEXT, "Username of the investigator who signed it.", username("signer")
        ),
        Column("printed_name", TEXT, "The investigator's printed name.", dig("printed_name")),
        Column("signed_at", DATETIME, "When it was signed (UTC).", dig("signed_at")),
        Column("meaning", TEXT, "The meaning of the signature, as shown.", dig("meaning")),
        *signature_columns(),
    ),
    records=_ends,
    participant_id=dig("participant_id"),
    zone=zone_of("participant"),
)


def _endpoints(ctx: ExportContext):
    """Each randomized participant's endpoints, computed as for the participant page
    (outcomes.selectors.endpoints_from), read in three queries per chunk of participants
    instead of four per participant."""
    queryset = Allocation.objects.select_related("participant__site", "arm").order_by(
        "participant__site__code", "participant__sequence"
    )
    queryset = ctx.without_identifiers(ctx.scoped(queryset, "participant__site"), "participant__")
    for chunk in chunked(queryset.iterator(chunk_size=CHUNK), CHUNK):
        ids = [a.participant_id for a in chunk]
        records = defaultdict(list)
        for pid, *values in VisitRecord.objects.filter(
            scheduled_visit__participant_id__in=ids
        ).values_list(
            "scheduled_visit__participant_id",
            "visit_date",
            "who_score",
            "respiratory_support",
            "discharged_on",
            "date_of_death",
        ):
            records[pid].append(values)
        fatal = dict(
            AdverseEvent.objects.filter(participant_id__in=ids, death_date__isnull=False)
            .order_by()
            .values("participant_id")
            .annotate(first=Min("death_date"))
            .values_list("participant_id", "first")
        )
        ends = {
            pid: (reason, ended_on)
            for pid, reason, ended_on in EndOfStudy.objects.filter(
                participant_id__in=ids
            ).values_list("participant_id", "reason", "ended_on")
        }
        for allocation in chunk:
            pid = allocation.participant_id
            yield _endpoint_row(allocation, records[pid], fatal.get(pid), ends.get(pid))


def _endpoint_row(allocation, records, fatal_event, end):
    endpoints = endpoints_from(
        randomized_at=allocation.randomized_at,
        site=allocation.participant.site,
        records=records,
        fatal_event=fatal_event,
        end=end,
    )
    improvement = endpoints.improvement
    return SimpleNamespace(
        participant=allocation.participant,
        participant_id=allocation.participant_id,
        arm_code=allocation.arm.code,
        died_by_day_28=endpoints.died_by_day_28,
        improvement_day=improvement.day if improvement else None,
        improvement_event=improvement.event if improvement else None,
        ventilation_free_days=endpoints.ventilation_free_days,
        worst_who_score=endpoints.worst_who_score,
        on_study=endpoints.on_study,
    )


ENDPOINTS = Dataset(
    name="endpoints",
    description=_(
        "Each randomized participant's derived endpoints to day 28, from the visit "
        "records, a fatal adverse event and the end of study; provisional while "
        "follow-up goes on."
    ),
    columns=(
        *participant_columns("participant"),
        Column("arm_code", CODE, "The arm allocated.", dig("arm_code"), choices=arm_codes),
        Column(
            "died_by_day_28",
            BOOLEAN,
            (
                "Died on or before day 28; empty: not known (follow-up ended alive before "
                "day 28, or goes on)."
            ),
            dig("died_by_day_28"),
        ),
        Column(
            "time_to_improvement_days",
            INTEGER,
            (
                "Study day of clinical improvement (2 WHO points below day 0, or discharge), "
                "or of censoring."
            ),
            dig("improvement_day"),
            unit="days",
        ),
        Column(
            "improvement_observed",
            BOOLEAN,
            "Yes: improvement on that day; No: censored on that day.",
            dig("improvement_event"),
        ),
        Column(
            "ventilation_free_days",
            INTEGER,
            "Days alive and free of invasive ventilation or ECMO to day 28.",
            dig("ventilation_free_days"),
            unit="days",
        ),
        Column(
            "worst_who_score",
            INTEGER,
            "Highest WHO score recorded (10 after a death).",
            dig("worst_who_score"),
            unit="points",
        ),
        Column(
            "follow_up_ongoing",
            BOOLEAN,
            "No end of study yet: values may still change.",
            dig("on_study"),
        ),
    ),
    records=_endpoints,
    participant_id=dig("participant_id"),
    zone=zone_of("participant"),
)


def participant_of_records(
    model, record_ids: Iterable[int] | None = None
) -> Callable[[int, Any], int | None] | None:
    """How a history row of `model` names its participant: None for a record of no
    participant (a site, an account); else a function of (record id, the row's first step
    on `participant_path`). A path of more than one step is resolved through the records as
    they stand (only `record_ids`, when given), in one query (a deleted record's participant
    is then unknown)."""
    path = getattr(model, "participant_path", None)
    if path is None:
        return None
    if path == "":
        return lambda record_id, _first: record_id
    if path == "participant":
        return lambda _record_id, first: first
    records = model.objects.all() if record_ids is None else model.objects.filter(pk__in=record_ids)
    through = dict(records.values_list("pk", path).iterator(chunk_size=CHUNK))
    return lambda record_id, _first: through.get(record_id)


def _audit_rows(ctx: ExportContext):
    """Every history row of every audited model, model by model (a query each), with the
    participant's study number where the record belongs to one. Only who, when, what and
    why are read: never a field's value, so never an identifier."""
    participants = Participant.objects.values_list("pk", "study_number", "site__time_zone")
    participants = ctx.scoped(participants, "site")
    known = {pk: (number, zone) for pk, number, zone in participants.iterator(chunk_size=CHUNK)}
    as_recorded = ctx.options.date_mode == DateMode.AS_RECORDED
    for model in sorted(audited_models(), key=lambda m: m._meta.label_lower):
        if getattr(model, "audit_concealed", False) and not ctx.options.include_concealed:
            continue
        participant_of = participant_of_records(model)
        path = getattr(model, "participant_path", None)
        first_step = path.split("__")[0] if path else "id"
        history = model.history.order_by("history_date", "history_id").values_list(
            "id",
            "history_id",
            "history_type",
            "history_date",
            "history_change_reason",
            "history_user__username",
            first_step,
        )
        for record_id, history_id, kind, changed_at, reason, changed_by, first in history.iterator(
            chunk_size=CHUNK
        ):
            pid = participant_of(record_id, first) if participant_of else None
            if ctx.options.site_ids is not None and pid not in known:
                continue
            number, zone = known.get(pid, (None, None))
            if participant_of is not None and number is None and not as_recorded:
                # A participant's record whose participant is not known here: its time
                # cannot be shifted or counted in study days, so it is left out.
                changed_at = None
            yield SimpleNamespace(
                model=model._meta.label_lower,
                record_id=record_id,
                history_id=history_id,
                action=HISTORY_TYPES.get(kind, kind),
                changed_at=changed_at,
                changed_by=changed_by,
                participant_id=pid if number is not None else None,
                study_number=number,
                zone=ZoneInfo(zone) if zone else None,
                reason=reason,
            )


AUDIT_TRAIL = Dataset(
    name="audit_trail",
    description=_(
        "Every change to trial data: who, when, which record, why. Identifier "
        "values are never exported."
    ),
    columns=(
        Column("model", TEXT, "The kind of record (app.model).", dig("model")),
        Column("record_id", INTEGER, "The record's number in its kind.", dig("record_id")),
        Column("history_id", INTEGER, "The change's number in its kind.", dig("history_id")),
        Column(
            "action", CODE, "Created, changed or deleted.", dig("action"), choices=AUDIT_ACTIONS
        ),
        Column("changed_at", DATETIME, "When (UTC).", dig("changed_at")),
        Column("changed_by", TEXT, "Username; empty: the system.", dig("changed_by")),
        Column(
            "study_number",
            TEXT,
            "The participant the record belongs to, when it names one.",
            dig("study_number"),
        ),
        Column("reason", TEXT, "The reason given for the change.", dig("reason"), free_text=True),
    ),
    records=_audit_rows,
    participant_id=dig("participant_id"),
    zone=dig("zone"),
)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        SCREENING_LOG,
        ELIGIBILITY_ANSWERS,
        PARTICIPANTS,
        CONSENTS,
        CONSENT_REFUSALS,
        SIGNOFFS,
        WITHDRAWALS,
        ALLOCATIONS,
        SCHEDULED_DOSES,
        ADMINISTRATIONS,
        DOSE_REMINDERS,
        VISITS,
        VISIT_REMINDERS,
        ADVERSE_EVENTS,
        AE_RELATEDNESS,
        END_OF_STUDY,
        ENDPOINTS,
        AUDIT_TRAIL,
    )
}
