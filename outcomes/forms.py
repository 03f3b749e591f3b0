"""Forms of outcomes: the visit form."""

from __future__ import annotations

import uuid

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Submit
from django import forms
from django.utils.translation import gettext_lazy as _

from trialsite.core.forms import ReasonField

from . import rules
from .models import (
    MEASURED_FIELDS,
    ActionTaken,
    AeOutcome,
    ChestCtChange,
    CtcaeGrade,
    EndReason,
    Relatedness,
    RespiratorySupport,
    VitalStatus,
)

# --- Visits ---

DATE = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


def _not_done_fields():
    return (
        forms.BooleanField(label=_("Not done"), required=False),
        forms.CharField(
            label=_("Why not done"),
            required=False,
            max_length=200,
            help_text=_("Required when not done."),
        ),
    )


class VisitForm(forms.Form):
    """Ranges and "not done" come from the protocol rules (`rules.measurement_problems`),
    checked here and again by the service (`visit_record`); dates need the participant's
    schedule, so only the service checks them, its messages put beside their fields."""

    visit_date = forms.DateField(label=_("Visit date"), widget=DATE)
    # A whole number: a value outside 0-10 reaches the service and its range message, where
    # a choice field would answer "not one of the available choices".
    who_score = forms.IntegerField(
        label=_("WHO clinical progression scale"),
        required=False,
        widget=forms.RadioSelect(choices=[(n, f"{n} · {text}") for n, text in rules.WHO_LEVELS]),
    )
    spo2 = forms.IntegerField(
        label=_("SpO2 (%)"), required=False, help_text=_("50 to 100 %, at the time of the visit.")
    )
    respiratory_support = forms.ChoiceField(
        label=_("Respiratory support"),
        required=False,
        choices=[("", "—"), *RespiratorySupport.choices],
    )
    pao2 = forms.DecimalField(
        label=_("PaO2 (mmHg)"),
        required=False,
        max_digits=6,
        decimal_places=1,
        help_text=_("Arterial blood gas, 20 to 700 mmHg."),
    )
    fio2 = forms.DecimalField(
        label=_("FiO2"),
        required=False,
        max_digits=6,
        decimal_places=3,
        help_text=_("A fraction (0.21 to 1.0) or a percentage (21 to 100); kept as a fraction."),
    )
    lymphocytes = forms.DecimalField(
        label=_("Lymphocyte count (×10⁹/L)"), required=False, max_digits=6, decimal_places=2
    )
    crp = forms.DecimalField(label=_("CRP (mg/L)"), required=False, max_digits=7, decimal_places=1)
    il6 = forms.DecimalField(
        label=_("IL-6 (pg/mL)"), required=False, max_digits=8, decimal_places=1
    )
    chest_ct = forms.ChoiceField(
        label=_("Chest CT change since the last scan"),
        required=False,
        choices=[("", "—"), *ChestCtChange.choices],
    )
    discharged_on = forms.DateField(
        label=_("Hospital discharge date"),
        required=False,
        widget=DATE,
        help_text=_("Empty while the participant is in hospital."),
    )
    vital_status = forms.ChoiceField(
        label=_("Vital status"), choices=VitalStatus.choices, widget=forms.RadioSelect
    )
    date_of_death = forms.DateField(label=_("Date of death"), required=False, widget=DATE)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in MEASURED_FIELDS:
            done, reason = _not_done_fields()
            self.fields[f"{name}_not_done"] = done
            self.fields[f"{name}_not_done_reason"] = reason

    def clean(self):
        # The service checks the same on its own; here, so that a value out of range shows
        # beside its field together with a missing date, not only once the date is fixed.
        data = super().clean()
        for field, message in rules.measurement_problems(self.measurements()).items():
            if field not in self.errors:
                self.add_error(field, message)
        return data

    def measurement_rows(self):
        """(value, "not done", reason) for each measurement, for the template's rows."""
        return [
            (self[name], self[f"{name}_not_done"], self[f"{name}_not_done_reason"])
            for name in MEASURED_FIELDS
        ]

    def measurements(self) -> dict:
        data = self.cleaned_data
        return {
            key: data.get(key)
            for name in MEASURED_FIELDS
            for key in (name, f"{name}_not_done", f"{name}_not_done_reason")
        }


class VisitCorrectionForm(VisitForm):
    """The visit form filled with what was recorded, and the reason for the change."""

    reason = ReasonField(
        help_text=_("Kept in the audit trail with the change, e.g. a transcription error.")
    )

    @staticmethod
    def initial_from(record) -> dict:
        initial = {
            name: getattr(record, name)
            for name in ("visit_date", "discharged_on", "vital_status", "date_of_death")
        }
        for name in MEASURED_FIELDS:
            for key in (name, f"{name}_not_done", f"{name}_not_done_reason"):
                initial[key] = getattr(record, key)
        return initial


# --- Adverse events and end of study ---


def _submit(label) -> FormHelper:
    helper = FormHelper()
    helper.add_input(Submit("submit", label))
    return helper


class AdverseEventForm(forms.Form):
    """Dates and seriousness are checked by the service (`adverse_event_record`), whose
    messages land beside their fields: the form only reads what was typed."""

    submission_token = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)
    administration = forms.IntegerField(widget=forms.HiddenInput, required=False)
    term = forms.CharField(
        label=_("Term"), max_length=200, help_text=_("The CTCAE term where there is one.")
    )
    onset_date = forms.DateField(label=_("Onset"), widget=DATE)
    end_date = forms.DateField(
        label=_("End"), required=False, widget=DATE, help_text=_("Empty while ongoing.")
    )
    grade = forms.TypedChoiceField(
        label=_("CTCAE grade"), choices=CtcaeGrade.choices, coerce=int, widget=forms.RadioSelect
    )
    death_date = forms.DateField(
        label=_("Date of death"),
        required=False,
        widget=DATE,
        help_text=_("Grade 5 only: it ends the participant's study."),
    )
    serious = forms.BooleanField(label=_("Serious adverse event"), required=False)
    criteria = forms.MultipleChoiceField(
        label=_("Seriousness criteria"),
        required=False,
        choices=rules.SERIOUSNESS_CRITERIA,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("At least one for a serious event."),
    )
    action_taken = forms.ChoiceField(label=_("Action taken"), choices=ActionTaken.choices)
    outcome = forms.ChoiceField(label=_("Outcome"), choices=AeOutcome.choices)

    def __init__(self, *args, changing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if changing:
            del self.fields["submission_token"]
            del self.fields["administration"]
            self.fields["reason"] = ReasonField()
        self.helper = _submit(_("Save changes") if changing else _("Record adverse event"))


class CausalityForm(forms.Form):
    expected = forms.TypedChoiceField(
        label=_("Expected"),
        choices=[("yes", _("Expected")), ("no", _("Unexpected"))],
        coerce=lambda value: value == "yes",
        widget=forms.RadioSelect,
        help_text=_("Against the reference safety information."),
    )
    password = forms.CharField(
        label=_("Your password"),
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text=_("Re-enter your password to sign."),
    )

    def __init__(self, *args, interventions=(), **kwargs):
        super().__init__(*args, **kwargs)
        fields = {
            f"related_{i.key}": forms.ChoiceField(
                label=_("Related to %(intervention)s") % {"intervention": i.label},
                choices=Relatedness.choices,
                widget=forms.RadioSelect,
            )
            for i in interventions
        }
        # The relatedness first, then expectedness, then the signature.
        self.fields = {**fields, **self.fields}
        self.interventions = list(interventions)
        self.helper = _submit(_("Sign"))

    def relatedness(self) -> dict[str, str]:
        return {i.key: self.cleaned_data[f"related_{i.key}"] for i in self.interventions}


class SaeReportForm(forms.Form):
    reported_on = forms.DateField(label=_("Reported to the sponsor and ethics on"), widget=DATE)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _submit(_("Record the report"))


class EndOfStudyForm(forms.Form):
    reason = forms.ChoiceField(
        label=_("Why the study ended"), choices=EndReason.choices, widget=forms.RadioSelect
    )
    ended_on = forms.DateField(
        label=_("Date"), widget=DATE, help_text=_("For a death, the date of death.")
    )
    details = forms.CharField(
        label=_("Details"), required=False, widget=forms.Textarea(attrs={"rows": 3})
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _submit(_("End the study"))


class EndOfStudySignForm(forms.Form):
    password = forms.CharField(
        label=_("Your password"),
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text=_("Re-enter your password to sign."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _submit(_("Sign"))
