"""The audit page as a reviewer's tool: narrowed by participant, kind of record, user, dates
and action; participants named by their study numbers; downloadable as CSV (English, UTC,
each text cell neutralised against spreadsheet formulas by the exports' safe-CSV writer).

The foundation's `AuditTrail` reads the changes; what needs the participants (a study number
from a participant's record, a participant from a study number) is done here."""

from __future__ import annotations

import io
from datetime import UTC

from django import forms
from django.utils.translation import gettext_lazy as _

from enrollment.models import Participant

from .core.selectors import ACCESS_EVENTS, AuditEntry, AuditFilter, audit_kinds
from .exports.datasets import participant_of_records
from .exports.safe_csv import CsvFile, text_cell

PAGE_SIZE = 100
CSV_CHUNK = 1000

ACTION_CHOICES = [
    ("created", _("Created")),
    ("changed", _("Changed")),
    ("deleted", _("Deleted")),
]


class AuditFilterForm(forms.Form):
    """The filters of the audit page (a GET form): each one empty means everything."""

    participant = forms.CharField(label=_("Participant (study number)"), required=False)
    kind = forms.ChoiceField(label=_("Kind of record"), required=False)
    user = forms.CharField(label=_("User"), required=False, max_length=150)
    date_from = forms.DateField(label=_("From (UTC date)"), required=False)
    date_to = forms.DateField(label=_("To (UTC date)"), required=False)
    action = forms.ChoiceField(
        label=_("Action"), required=False, choices=[("", _("Any")), *ACTION_CHOICES]
    )

    def __init__(self, *args, include_concealed: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.include_concealed = include_concealed
        self.fields["kind"].choices = [
            ("", _("Any")),
            *[
                (m._meta.label_lower, str(m._meta.verbose_name).capitalize())
                for m in audit_kinds(include_concealed=include_concealed)
            ],
            (ACCESS_EVENTS, _("Access events (logins, logouts…)")),
        ]
        for name in ("date_from", "date_to"):
            self.fields[name].widget = forms.DateInput(attrs={"type": "date"})

    def clean_participant(self) -> int | None:
        """The participant of the study number, deleted or not."""
        number = self.cleaned_data["participant"].strip()
        if not number:
            return None
        found = (
            Participant.history.filter(study_number__iexact=number)
            .values_list("id", flat=True)
            .first()
        )
        if found is None:
            raise forms.ValidationError(_("No participant has this study number."))
        return found

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and end < start:
            self.add_error("date_to", _("The end date is before the start date."))
        return cleaned

    def audit_filter(self) -> AuditFilter:
        """The filters as the foundation reads them; nothing but the reviewer's own scope when
        the form is unbound or has errors (the page then says which field is wrong)."""
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        return AuditFilter(
            participant_id=data.get("participant"),
            kind=data.get("kind", ""),
            username=(data.get("user") or "").strip(),
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            action=data.get("action", ""),
            include_concealed=self.include_concealed,
        )


def study_numbers(records: dict[type, list]) -> dict[tuple[str, int], str]:
    """The study number of each participant's record among these history rows: one query per
    model whose path has more than one step (through the records as they stand), and one or
    two for the study numbers (a deleted participant's from their last version)."""
    participant_ids = {}
    for model, rows in records.items():
        participant_of = participant_of_records(model, {r.id for r in rows})
        if participant_of is None:
            continue
        first = model.participant_path.split("__")[0]
        for r in rows:
            step = getattr(r, f"{first}_id") if first else r.id
            participant_ids[model._meta.label_lower, r.id] = participant_of(r.id, step)
    wanted = {pid for pid in participant_ids.values() if pid is not None}
    numbers = dict(Participant.objects.filter(pk__in=wanted).values_list("pk", "study_number"))
    missing = wanted - numbers.keys()
    if missing:
        deleted = Participant.history.filter(id__in=missing).values_list("id", "study_number")
        numbers.update(dict(deleted))
    return {key: numbers[pid] for key, pid in participant_ids.items() if pid in numbers}


CSV_COLUMNS = [
    "when_utc",
    "who",
    "kind",
    "record",
    "study_number",
    "action",
    "changes",
    "reason",
]


def _changes_text(entry: AuditEntry) -> str:
    return "; ".join(
        f"{c['field']}: {c['old']} -> {c['new']}" if c["old"] != "" else f"{c['field']}: {c['new']}"
        for c in entry.changes
    )


def row_cells(entry: AuditEntry) -> list[str]:
    record = entry.object if not entry.count else f"{entry.parent_label} {entry.parent_id}"
    return [
        entry.when.astimezone(UTC).isoformat(timespec="seconds") if entry.when else "",
        text_cell(entry.who),
        text_cell(entry.label),
        text_cell(record),
        text_cell(entry.study_number),
        text_cell(entry.action),
        text_cell(_changes_text(entry)),
        text_cell(entry.reason),
    ]


def audit_csv_bytes(trail) -> bytes:
    """Every row of the (filtered) audit trail, newest first, read a chunk at a time, with a
    byte-order mark so that a spreadsheet reads Chinese reasons correctly."""
    stream = io.BytesIO()
    out = CsvFile(stream, bom=True)
    out.header(CSV_COLUMNS)
    start = 0
    while True:
        chunk = trail[start : start + CSV_CHUNK]
        out.write_all(row_cells(e) for e in chunk)
        if len(chunk) < CSV_CHUNK:
            break
        start += CSV_CHUNK
    out.close()
    return stream.getvalue()
