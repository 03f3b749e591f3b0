"""The trial's clinical data as CDISC ODM 1.3.2 XML: what OpenClinica and REDCap users exchange
with sponsors.

Nothing here decides what is exported or how it is de-identified: the file is written from the
same datasets, columns, scoping and date handling as the CSVs (`datasets.py`, `columns.py`,
`deidentify.py`), through the export's own `ExportContext`, so an identifier left out of a CSV
is left out here too and a shifted date is shifted by the same days as in the CSVs beside it.

- **Metadata** from the loaded protocol and the data dictionary: a study event per step of the
  trial (screening, consent, randomization, each dose day, each visit, adverse events, end of
  study), a form and an item group per dataset, an item per dictionary column (its type from
  the dictionary's, its allowed values as a code list with their labels, its unit).
- **Clinical data**: a subject per participant (the study number; the site as a location),
  each record of a dataset a form (or an item group of one), an item per answered value
  (unanswered: no item; "not done": the `_status` item says so).
- **Audit records**: a form says who entered it, where and when; an item whose value a later
  change set says who changed it, when and (with free text) why. Taken from the audit trail's
  history rows, whose model and number each record names (`SourceID`), as `audit_trail.csv`
  does. With study days instead of dates no audit record is written: its time would be a date.

The XML is written element by element to the stream (a SAX writer), participants a batch at a
time: the datasets are read side by side, each in participant order, so no dataset and no tree
is held whole in memory.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO
from xml.sax.saxutils import XMLGenerator

from arms.models import Allocation
from dosing.models import Administration, ScheduledDose
from enrollment.models import (
    Consent,
    ConsentRefusal,
    EligibilitySignoff,
    Participant,
    Screening,
    Withdrawal,
)
from outcomes.models import (
    AdverseEvent,
    CausalityAssessment,
    EndOfStudy,
    InterventionRelatedness,
    ScheduledVisit,
    VisitRecord,
)
from trialsite.core.clock import utc_iso
from trialsite.core.models import Protocol, Site

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
    chunked,
    dig,
)
from .datasets import DATASETS
from .deidentify import DateMode
from .dictionary import column_type
from .safe_csv import number_text

ODM_FILE = "odm.xml"
ODM_NAMESPACE = "http://www.cdisc.org/ns/odm/v1.3"
ODM_VERSION = "1.3.2"
# Participants whose records are gathered, audited and written together.
PARTICIPANTS_PER_BATCH = 200
# Where a form's or an item's definition is described in the bundle's dictionary.csv.
DATASET_ALIAS = "trialsite:dataset"
DICTIONARY_ALIAS = "trialsite:dictionary"
SYSTEM_USER = "USR.SYSTEM"

# The dictionary's types as ODM data types; a code is text with its code list.
DATA_TYPES = {
    INTEGER: "integer",
    DECIMAL: "float",
    TEXT: "text",
    CODE: "text",
    DATE: "date",
    DATETIME: "datetime",
    BOOLEAN: "boolean",
}
# The subject key and its site reference say these on every subject already.
SUBJECT_COLUMNS = {"study_number", "site_code"}


# --- What goes where --------------------------------------------------------------------------


def _oid(prefix: str, *names: str) -> str:
    return ".".join((prefix, *(name.upper() for name in names)))


@cache
def item_oid(dataset: str, column: str) -> str:
    return _oid("IT", dataset, column)


def dose_event(study_day) -> str:
    return f"SE.DOSE.D{study_day}"


def visit_event(code: str) -> str:
    return _oid("SE.VISIT", code)


SCREENING = "SE.SCREENING"
CONSENT = "SE.CONSENT"
RANDOMIZATION = "SE.RANDOMIZATION"
ADVERSE_EVENTS = "SE.AE"
END_OF_STUDY = "SE.END"
# The prefixes of the events of a kind: each dose day, each visit.
DOSE_DAYS = "SE.DOSE."
VISITS = "SE.VISIT."


@dataclass(frozen=True)
class OdmForm:
    """A dataset as a form: its study event (`where`: the event, or the prefix of the events
    of its kind, `event` then telling a record's own), the key of the form a record is (None:
    one form per participant and event), the key of its item group within the form (None:
    one record per form), and the audited records behind it as (path from the record,
    model): an item is audited by the first of them holding its column as a field."""

    dataset: str
    where: str
    form_key: Callable[[Any], Any] | None = None
    group_key: Callable[[Any], Any] | None = None
    audited: tuple[tuple[str, type], ...] = ()
    event: Callable[[Any], str] | None = None

    @property
    def oid(self) -> str:
        return _oid("F", self.dataset)

    @property
    def group_oid(self) -> str:
        return _oid("IG", self.dataset)

    def event_of(self, record) -> str:
        return self.event(record) if self.event else self.where

    def in_event(self, oid: str) -> bool:
        return oid == self.where or (self.where.endswith(".") and oid.startswith(self.where))


PK = dig("pk")

# Reminders are messages to staff, not case report data; the audit trail is in the audit
# records. Every other dataset is a form.
FORMS: tuple[OdmForm, ...] = (
    OdmForm("participants", SCREENING, audited=(("", Participant),)),
    OdmForm("screening_log", SCREENING, PK, audited=(("", Screening),)),
    OdmForm(
        "eligibility_answers",
        SCREENING,
        dig("screening.pk"),
        dig("code"),
        audited=(("screening", Screening),),
    ),
    OdmForm("signoffs", SCREENING, PK, audited=(("", EligibilitySignoff),)),
    OdmForm("consents", CONSENT, PK, audited=(("", Consent),)),
    OdmForm("consent_refusals", CONSENT, PK, audited=(("", ConsentRefusal),)),
    OdmForm("withdrawals", CONSENT, PK, audited=(("", Withdrawal),)),
    OdmForm("allocations", RANDOMIZATION, audited=(("", Allocation),)),
    OdmForm(
        "scheduled_doses",
        DOSE_DAYS,
        PK,
        audited=(("", ScheduledDose),),
        event=lambda dose: dose_event(dose.study_day),
    ),
    OdmForm(
        "administrations",
        DOSE_DAYS,
        PK,
        audited=(("", Administration),),
        event=lambda given: dose_event(given.scheduled_dose.study_day),
    ),
    OdmForm(
        "visits",
        VISITS,
        audited=(("record", VisitRecord), ("", ScheduledVisit)),
        event=lambda visit: visit_event(visit.definition.code),
    ),
    OdmForm(
        "adverse_events",
        ADVERSE_EVENTS,
        PK,
        audited=(("", AdverseEvent), ("causality", CausalityAssessment)),
    ),
    OdmForm(
        "adverse_event_relatedness",
        ADVERSE_EVENTS,
        dig("assessment.adverse_event_id"),
        PK,
        audited=(("", InterventionRelatedness),),
    ),
    OdmForm("end_of_study", END_OF_STUDY, audited=(("", EndOfStudy),)),
    # Derived from the visits and the end of study: no record of its own to audit.
    OdmForm("endpoints", END_OF_STUDY),
)
FORMS_BY_DATASET = {form.dataset: form for form in FORMS}


@dataclass(frozen=True)
class StudyEvent:
    oid: str
    name: str
    kind: str  # ODM's EventType: Scheduled, Unscheduled or Common
    mandatory: bool = False


def study_events(protocol: Protocol | None) -> list[StudyEvent]:
    """The trial's steps in their order: dose days from the protocol's schedules and the
    doses scheduled (an amendment may have moved some), visits likewise."""
    days = {d for (d,) in ScheduledDose.objects.order_by().values_list("study_day").distinct()}
    visits = {
        code: (name, day)
        for code, name, day in ScheduledVisit.objects.order_by()
        .values_list("definition__code", "definition__name", "definition__study_day")
        .distinct()
    }
    if protocol is not None:
        for arm in protocol.arms.prefetch_related("dose_schedules"):
            for schedule in arm.dose_schedules.all():
                days.update(int(day) for day in schedule.study_days)
        for definition in protocol.visits.all():
            visits[definition.code] = (definition.name, definition.study_day)
    return [
        StudyEvent(SCREENING, "Registration and screening", "Scheduled", mandatory=True),
        StudyEvent(CONSENT, "Informed consent", "Scheduled", mandatory=True),
        StudyEvent(RANDOMIZATION, "Randomization", "Scheduled"),
        *(StudyEvent(dose_event(day), f"Dose day {day}", "Scheduled") for day in sorted(days)),
        *(
            StudyEvent(visit_event(code), f"Visit {code}: {name}", "Scheduled")
            for code, (name, _day) in sorted(visits.items(), key=lambda v: (v[1][1], v[0]))
        ),
        StudyEvent(ADVERSE_EVENTS, "Adverse events", "Common"),
        StudyEvent(END_OF_STUDY, "End of study", "Scheduled"),
    ]


# --- Items ------------------------------------------------------------------------------------


def form_columns(dataset: Dataset, ctx: ExportContext) -> list[Column]:
    """The dictionary's columns of the dataset as this export writes them, less those the
    subject itself says (its study number and site); the site's time zone once, with the
    participant."""
    columns = dataset.columns_for(ctx.options)
    return [
        c
        for c in columns
        if c.name not in SUBJECT_COLUMNS
        and (c.name != "site_time_zone" or dataset.name == "participants")
    ]


def data_type(column: Column, ctx: ExportContext) -> tuple[str, str]:
    """(ODM data type, unit) from the type and unit the dictionary gives the column."""
    kind, unit = column_type(column.kind, ctx.options)
    return DATA_TYPES.get(kind, DATA_TYPES[column.kind]), unit or column.unit


def unit_oid(unit: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", unit.replace("%", "percent")).strip("_")
    return _oid("MU", slug)


def item_value(column: Column, record, ctx: ExportContext, pid, zone) -> str | None:
    """A value as the CSV writes it (dates shifted or as study days, times in UTC, codes,
    plain numbers) but without the CSV's spreadsheet guard; None when unanswered."""
    value = column.get(record)
    if value is None or value == "":
        return None
    if column.kind == DATE and isinstance(value, date):
        shown = ctx.dates.date(value, pid)
    elif column.kind == DATETIME and isinstance(value, datetime):
        shown = ctx.dates.moment(value, pid, zone)
    elif isinstance(value, bool):
        shown = "true" if value else "false"
    else:
        shown = number_text(value) if column.kind in (INTEGER, DECIMAL) else None
        shown = str(value) if shown is None else shown
    return None if shown is None else xml_text(str(shown))


# Characters XML 1.0 cannot carry at all (a control character typed or pasted into a field).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


# --- Audit ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One history row: who, when, why, and where it is in the audit trail."""

    username: str | None
    at: datetime
    reason: str
    source: str


@dataclass
class RecordAudit:
    created: Change
    # Field name -> the change that gave the field its present value.
    set_by: dict[str, Change]


def fields_of(model, column: Column) -> tuple[str, ...]:
    """The model's fields a column shows: its own name, or for a `_status` column the value
    and its "not done" flag. Identifiers are never read, nor compared."""
    return () if column.identifier else _fields_named(model, column.name)


@cache
def _fields_named(model, name: str) -> tuple[str, ...]:
    names = {f.name for f in model._meta.concrete_fields}
    if name in names:
        return (name,)
    base = name.removesuffix("_status")
    if base != name and base in names and f"{base}_not_done" in names:
        return (base, f"{base}_not_done")
    return ()


def _audited(model) -> bool:
    # Not hasattr(model, "history"): the history descriptor builds a manager class each time.
    return hasattr(model._meta, "simple_history_manager_attribute")


def record_audits(model, ids: set[int], fields: set[str]) -> dict[int, RecordAudit]:
    """Each record's creation and, per field, the change that set its value: one query over
    the model's history rows of these records, oldest first."""
    if not ids:
        return {}
    label = model._meta.label_lower
    history_fields = {f.name for f in model.history.model._meta.fields}
    fields = sorted(f for f in fields if f in history_fields)
    rows = (
        model.history.filter(id__in=ids)
        .order_by("id", "history_date", "history_id")
        .values_list(
            "id",
            "history_id",
            "history_date",
            "history_change_reason",
            "history_user__username",
            *fields,
        )
    )
    audits: dict[int, RecordAudit] = {}
    previous: dict[int, tuple] = {}
    for record_id, history_id, at, reason, username, *values in rows.iterator(chunk_size=CHUNK):
        change = Change(username, at, reason or "", f"{label}:{history_id}")
        audit = audits.get(record_id)
        if audit is None:
            audits[record_id] = RecordAudit(change, dict.fromkeys(fields, change))
        else:
            before = previous[record_id]
            for name, old, new in zip(fields, before, values, strict=True):
                if old != new:
                    audit.set_by[name] = change
        previous[record_id] = tuple(values)
    return audits


# --- Writing ----------------------------------------------------------------------------------


class _Xml:
    """Elements to a binary stream as UTF-8, one at a time, through a text buffer (the SAX
    writer's own wrapper writes every fragment through at once)."""

    def __init__(self, stream: BinaryIO):
        self._text = io.TextIOWrapper(
            stream, encoding="utf-8", errors="xmlcharrefreplace", newline="\n"
        )
        self._out = XMLGenerator(self._text, encoding="utf-8", short_empty_elements=True)
        self._out.startDocument()

    def start(self, name: str, **attrs) -> None:
        self._out.startElement(name, {k: str(v) for k, v in attrs.items() if v is not None})
        self._out.ignorableWhitespace("\n")

    def end(self, name: str) -> None:
        self._out.endElement(name)
        self._out.ignorableWhitespace("\n")

    def leaf(self, name: str, text: str | None = None, **attrs) -> None:
        self._out.startElement(name, {k: str(v) for k, v in attrs.items() if v is not None})
        if text:
            self._out.characters(xml_text(text))
        self.end(name)

    def translated(self, name: str, text: str) -> None:
        self.start(name)
        self.leaf("TranslatedText", str(text), **{"xml:lang": "en"})
        self.end(name)

    def close(self) -> None:
        """Flushes; the stream stays open for the caller (hashing, zipping)."""
        self._out.endDocument()
        self._text.flush()
        self._text.detach()


def _yes(flag: bool) -> str:
    return "Yes" if flag else "No"


@dataclass
class _Plan:
    """What one file holds: the chosen datasets' forms, the events that have any."""

    study_oid: str
    mdv_oid: str
    forms: list[OdmForm]
    datasets: dict[str, Dataset]
    columns: dict[str, list[Column]]
    events: list[StudyEvent]
    event_forms: dict[str, list[OdmForm]]
    audit: bool


def _plan(ctx: ExportContext, protocol: Protocol | None) -> _Plan:
    forms = [FORMS_BY_DATASET[name] for name in ctx.options.datasets if name in FORMS_BY_DATASET]
    datasets = {form.dataset: DATASETS[form.dataset] for form in forms}
    events = study_events(protocol)
    # Which forms each event holds, for the metadata: a dose-day or visit form in each
    # event of its kind, every other form in its one event.
    event_forms: dict[str, list[OdmForm]] = defaultdict(list)
    for event in events:
        event_forms[event.oid] = [form for form in forms if form.in_event(event.oid)]
    code = protocol.code if protocol else "TRIAL"
    version = protocol.version if protocol else "0"
    return _Plan(
        study_oid=_oid("ST", code),
        mdv_oid=f"MDV.{code.upper()}.{version}",
        forms=forms,
        datasets=datasets,
        columns={name: form_columns(dataset, ctx) for name, dataset in datasets.items()},
        events=[e for e in events if event_forms.get(e.oid)],
        event_forms=event_forms,
        # A time stamp is a date: not in a file of study days.
        audit=ctx.options.date_mode != DateMode.STUDY_DAYS,
    )


def _write_study(xml: _Xml, plan: _Plan, ctx: ExportContext, protocol: Protocol | None) -> None:
    code = protocol.code if protocol else "TRIAL"
    xml.start("Study", OID=plan.study_oid)
    xml.start("GlobalVariables")
    xml.leaf("StudyName", code)
    xml.leaf("StudyDescription", protocol.title if protocol else code)
    xml.leaf("ProtocolName", code)
    xml.end("GlobalVariables")

    units: dict[str, str] = {}
    for name in plan.columns:
        for column in plan.columns[name]:
            _type, unit = data_type(column, ctx)
            if unit and _type in ("integer", "float"):
                units.setdefault(unit_oid(unit), unit)
    xml.start("BasicDefinitions")
    for oid, unit in sorted(units.items()):
        xml.start("MeasurementUnit", OID=oid, Name=unit)
        xml.translated("Symbol", unit)
        xml.end("MeasurementUnit")
    xml.end("BasicDefinitions")

    version = protocol.version if protocol else ""
    xml.start(
        "MetaDataVersion",
        OID=plan.mdv_oid,
        Name=f"{code} protocol version {version}",
        Description="From the loaded protocol and the export's data dictionary.",
    )
    xml.start("Protocol")
    for order, event in enumerate(plan.events, 1):
        xml.leaf(
            "StudyEventRef",
            StudyEventOID=event.oid,
            OrderNumber=order,
            Mandatory=_yes(event.mandatory),
        )
    xml.end("Protocol")
    for event in plan.events:
        xml.start("StudyEventDef", OID=event.oid, Name=event.name, Repeating="No", Type=event.kind)
        for order, form in enumerate(plan.event_forms[event.oid], 1):
            xml.leaf("FormRef", FormOID=form.oid, OrderNumber=order, Mandatory="No")
        xml.end("StudyEventDef")
    for form in plan.forms:
        dataset = plan.datasets[form.dataset]
        xml.start("FormDef", OID=form.oid, Name=form.dataset, Repeating=_yes(form.form_key))
        xml.translated("Description", dataset.description)
        xml.leaf("ItemGroupRef", ItemGroupOID=form.group_oid, Mandatory="Yes")
        xml.leaf("Alias", Context=DATASET_ALIAS, Name=form.dataset)
        xml.end("FormDef")
    for form in plan.forms:
        xml.start(
            "ItemGroupDef",
            OID=form.group_oid,
            Name=form.dataset,
            Repeating=_yes(form.group_key),
        )
        for order, column in enumerate(plan.columns[form.dataset], 1):
            xml.leaf(
                "ItemRef",
                ItemOID=item_oid(form.dataset, column.name),
                OrderNumber=order,
                Mandatory="No",
            )
        xml.end("ItemGroupDef")
    code_lists = []
    for form in plan.forms:
        for column in plan.columns[form.dataset]:
            odm_type, unit = data_type(column, ctx)
            allowed = column.allowed() if column.kind == CODE else []
            xml.start(
                "ItemDef",
                OID=item_oid(form.dataset, column.name),
                Name=column.name,
                DataType=odm_type,
            )
            xml.translated("Description", column.description)
            if unit and odm_type in ("integer", "float"):
                xml.leaf("MeasurementUnitRef", MeasurementUnitOID=unit_oid(unit))
            if allowed:
                oid = _oid("CL", form.dataset, column.name)
                xml.leaf("CodeListRef", CodeListOID=oid)
                code_lists.append((oid, column.name, allowed))
            xml.leaf("Alias", Context=DICTIONARY_ALIAS, Name=f"{form.dataset}.{column.name}")
            xml.end("ItemDef")
    for oid, name, allowed in code_lists:
        xml.start("CodeList", OID=oid, Name=name, DataType="text")
        for code, label in allowed:
            xml.start("CodeListItem", CodedValue=code)
            xml.translated("Decode", label)
            xml.end("CodeListItem")
        xml.end("CodeList")
    xml.end("MetaDataVersion")
    xml.end("Study")


def location_oid(site_code: str) -> str:
    return _oid("LOC", site_code)


def user_oid(username: str | None) -> str:
    return f"USR.{username}" if username else SYSTEM_USER


def _write_admin(
    xml: _Xml, plan: _Plan, ctx: ExportContext, effective: date, sites: list[tuple[str, str]]
) -> None:
    """The staff who appear in the audit records (by username only) and each site."""
    xml.start("AdminData", StudyOID=plan.study_oid)
    if plan.audit:
        usernames = set()
        for form in plan.forms:
            for _path, model in form.audited:
                if _audited(model):
                    usernames.update(
                        model.history.exclude(history_user__isnull=True)
                        .order_by()
                        .values_list("history_user__username", flat=True)
                        .distinct()
                    )
        xml.start("User", OID=SYSTEM_USER, UserType="Other")
        xml.leaf("LoginName", "(system)")
        xml.end("User")
        for username in sorted(usernames):
            xml.start("User", OID=user_oid(username), UserType="Other")
            xml.leaf("LoginName", username)
            xml.end("User")
    for code, name in sites:
        xml.start("Location", OID=location_oid(code), Name=f"{code} – {name}", LocationType="Site")
        xml.leaf(
            "MetaDataVersionRef",
            StudyOID=plan.study_oid,
            MetaDataVersionOID=plan.mdv_oid,
            EffectiveDate=effective.isoformat(),
        )
        xml.end("Location")
    xml.end("AdminData")


class _Side:
    """One dataset's records, read in participant order, handed over a batch at a time."""

    _END = object()

    def __init__(self, dataset: Dataset, ctx: ExportContext):
        self.dataset = dataset
        self._records = iter(dataset.records(ctx))
        self._next = next(self._records, self._END)

    def take(self, rank: dict[int, int], first: int, last: int) -> dict[int, list]:
        """The records of the participants ranked first..last (in order), by participant."""
        taken: dict[int, list] = defaultdict(list)
        while self._next is not self._END:
            pid = self.dataset.participant_id(self._next)
            place = rank.get(pid)
            if place is not None:
                if place > last:
                    break
                if place < first:
                    raise RuntimeError(f"{self.dataset.name} is not in participant order")
                taken[pid].append(self._next)
            self._next = next(self._records, self._END)
        return taken


def _audits_for(plan: _Plan, batch: dict[str, dict[int, list]]) -> dict[type, dict]:
    """The audit of every record behind the batch's forms: a query per audited model."""
    ids: dict[type, set[int]] = defaultdict(set)
    fields: dict[type, set[str]] = defaultdict(set)
    for form in plan.forms:
        sources = [(dig(p) if p else None, m) for p, m in form.audited if _audited(m)]
        for column in plan.columns[form.dataset]:
            for _get, model in sources:
                if found := fields_of(model, column):
                    fields[model].update(found)
                    break
        for records in batch[form.dataset].values():
            for record in records:
                for get, model in sources:
                    source = get(record) if get else record
                    if source is not None:
                        ids[model].add(source.pk)
    return {model: record_audits(model, ids[model], fields[model]) for model in ids}


def _write_audit(xml: _Xml, change: Change, ctx: ExportContext, pid, zone, site: str) -> None:
    xml.start("AuditRecord")
    xml.leaf("UserRef", UserOID=user_oid(change.username))
    xml.leaf("LocationRef", LocationOID=location_oid(site))
    xml.leaf("DateTimeStamp", ctx.dates.moment(change.at, pid, zone))
    if ctx.options.free_text and change.reason.strip():
        xml.leaf("ReasonForChange", change.reason)
    xml.leaf("SourceID", change.source)
    xml.end("AuditRecord")


def _form_sources(form: OdmForm, record) -> list[tuple[type, Any]]:
    found = []
    for path, model in form.audited:
        if not _audited(model):
            continue
        source = dig(path)(record) if path else record
        if source is not None:
            found.append((model, source))
    return found


def _write_subject(
    xml: _Xml,
    plan: _Plan,
    ctx: ExportContext,
    subject: tuple[int, str, str],
    records: dict[str, list],
    audits: dict[type, dict],
) -> None:
    pid, study_number, site = subject
    xml.start("SubjectData", SubjectKey=study_number)
    xml.leaf("SiteRef", LocationOID=location_oid(site))
    by_event: dict[str, list[tuple[OdmForm, Any]]] = defaultdict(list)
    for form in plan.forms:
        for record in records.get(form.dataset, ()):
            by_event[form.event_of(record)].append((form, record))
    for event in plan.events:
        if event.oid not in by_event:
            continue
        xml.start("StudyEventData", StudyEventOID=event.oid)
        for form in plan.event_forms[event.oid]:
            group: list = []
            key = None
            for this_form, record in by_event[event.oid]:
                if this_form is not form:
                    continue
                record_key = form.form_key(record) if form.form_key else None
                if group and record_key != key:
                    _write_form(xml, plan, ctx, form, key, group, audits, pid, site)
                    group = []
                key = record_key
                group.append(record)
            if group:
                _write_form(xml, plan, ctx, form, key, group, audits, pid, site)
        xml.end("StudyEventData")
    xml.end("SubjectData")


def _write_form(xml, plan, ctx, form, key, records, audits, pid, site) -> None:
    dataset = plan.datasets[form.dataset]
    xml.start("FormData", FormOID=form.oid, FormRepeatKey=None if key is None else str(key))
    first_sources = _form_sources(form, records[0])
    form_change = None
    if plan.audit and first_sources:
        model, source = first_sources[0]
        audit = audits.get(model, {}).get(source.pk)
        if audit is not None:
            form_change = audit.created
            _write_audit(xml, form_change, ctx, pid, dataset.zone(records[0]), site)
    for record in records:
        zone = dataset.zone(record)
        group_key = form.group_key(record) if form.group_key else None
        xml.start(
            "ItemGroupData",
            ItemGroupOID=form.group_oid,
            ItemGroupRepeatKey=None if group_key is None else str(group_key),
        )
        sources = _form_sources(form, record) if plan.audit else []
        record_audits_ = [(m, audits.get(m, {}).get(s.pk)) for m, s in sources]
        if record_audits_ and record_audits_[0][1] is not None:
            created = record_audits_[0][1].created
            if created != form_change:
                _write_audit(xml, created, ctx, pid, zone, site)
        for column in plan.columns[form.dataset]:
            value = item_value(column, record, ctx, pid, zone)
            if value is None:
                continue
            change = _item_change(column, record_audits_)
            oid = item_oid(form.dataset, column.name)
            if change is None:
                xml.leaf("ItemData", ItemOID=oid, Value=value)
            else:
                xml.start("ItemData", ItemOID=oid, Value=value)
                _write_audit(xml, change, ctx, pid, zone, site)
                xml.end("ItemData")
        xml.end("ItemGroupData")
    xml.end("FormData")


def _item_change(column: Column, record_audits_) -> Change | None:
    """The change that gave the item its value, when it came after the record was made
    (the form's audit record says who made it)."""
    for model, audit in record_audits_:
        names = fields_of(model, column)
        if not names:
            continue
        if audit is None:
            return None
        changes = [audit.set_by[n] for n in names if n in audit.set_by]
        latest = max(changes, key=lambda c: (c.at, c.source), default=None)
        return None if latest is None or latest == audit.created else latest
    return None


def odm_write(stream: BinaryIO, *, context: ExportContext, exported_at: datetime) -> int:
    """Write the export's clinical data as ODM 1.3.2 to a binary stream; returns how many
    subjects it holds. The bundle's context: its datasets, sites and de-identification."""
    ctx = context
    protocol = Protocol.objects.filter(is_current=True).first()
    plan = _plan(ctx, protocol)
    sites_query = ctx.scoped(Site.objects.order_by("code"), "pk")
    sites = list(sites_query.values_list("code", "name"))
    # A site runs the protocol version from when it was loaded.
    loaded = (
        protocol.history.order_by("history_date").values_list("history_date", flat=True).first()
        if protocol
        else None
    )
    effective = (loaded or exported_at).astimezone(UTC).date()

    xml = _Xml(stream)
    stamp = exported_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    options = ctx.options
    xml.start(
        "ODM",
        xmlns=ODM_NAMESPACE,
        FileType="Snapshot",
        FileOID=f"trialsite.{plan.study_oid}.{stamp}",
        CreationDateTime=utc_iso(exported_at),
        AsOfDateTime=utc_iso(exported_at),
        ODMVersion=ODM_VERSION,
        Originator="Trialsite",
        SourceSystem="Trialsite",
        Description=(
            "Identified export" if options.identified else "De-identified: study numbers only"
        )
        + f"; dates {options.date_mode}",
    )
    _write_study(xml, plan, ctx, protocol)
    _write_admin(xml, plan, ctx, effective, sites)
    xml.start("ClinicalData", StudyOID=plan.study_oid, MetaDataVersionOID=plan.mdv_oid)
    participants = ctx.scoped(Participant.objects.order_by("site__code", "sequence"), "site")
    rank = {
        pk: place
        for place, pk in enumerate(participants.values_list("pk", flat=True).iterator(CHUNK))
    }
    sides = [_Side(plan.datasets[form.dataset], ctx) for form in plan.forms]
    subjects = participants.values_list("pk", "study_number", "site__code")
    written = 0
    for found in chunked(subjects.iterator(chunk_size=CHUNK), PARTICIPANTS_PER_BATCH):
        # Registered since the ranks were read: not in this file (nor their records).
        batch = [subject for subject in found if subject[0] in rank]
        if not batch:
            continue
        first_place, last_place = rank[batch[0][0]], rank[batch[-1][0]]
        taken = {side.dataset.name: side.take(rank, first_place, last_place) for side in sides}
        audits = _audits_for(plan, taken) if plan.audit else {}
        for subject in batch:
            records = {name: by_pid.get(subject[0], []) for name, by_pid in taken.items()}
            _write_subject(xml, plan, ctx, subject, records, audits)
            written += 1
    xml.end("ClinicalData")
    xml.end("ODM")
    xml.close()
    return written


def odm_file(path: Path, *, context: ExportContext, exported_at: datetime) -> int:
    """`odm_write` to a file; returns the number of subjects."""
    with path.open("wb") as stream:
        return odm_write(stream, context=context, exported_at=exported_at)
