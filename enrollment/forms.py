"""Forms of enrollment. The screening form is generated from the protocol's criteria."""

from __future__ import annotations

import uuid
from typing import Any

from crispy_forms.bootstrap import InlineRadios
from crispy_forms.helper import FormHelper
from crispy_forms.layout import Layout, Submit
from django import forms
from django.utils.translation import gettext_lazy as _

from trialsite.core.protocol import BASELINE_INPUTS

from . import rules
from .layout import TextFieldset
from .models import ConsentVersion, Severity, Sex, Signer, WithdrawalScope

DATE = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
DATETIME = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
YES_NO = [("yes", _("Yes")), ("no", _("No"))]


class TokenForm(forms.Form):
    """Carries a submission token: the service returns the first record for a resubmit."""

    submission_token = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)

    def __init__(self, *args, submit_label=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper(submit_label or _("Save"))


def _helper(submit_label) -> FormHelper:
    helper = FormHelper()
    helper.add_input(Submit("submit", submit_label))
    return helper


class ParticipantRegistrationForm(forms.Form):
    site = forms.ModelChoiceField(queryset=None, label=_("Site"))
    name = forms.CharField(label=_("Name"), max_length=200)
    mrn = forms.CharField(label=_("Hospital record number (MRN)"), max_length=50)
    sex = forms.ChoiceField(label=_("Sex"), choices=Sex.choices, widget=forms.RadioSelect)
    date_of_birth = forms.DateField(label=_("Date of birth"), widget=DATE)
    contact = forms.CharField(
        label=_("Contact (phone, next of kin)"), max_length=300, required=False
    )

    def __init__(self, *args, sites, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["site"].queryset = sites
        if len(sites) == 1:
            self.fields["site"].initial = sites[0]
        self.helper = _helper(_("Register"))


# --- Screening -----------------------------------------------------------------------------------


def _yes_no_field(label) -> forms.Field:
    return forms.TypedChoiceField(
        label=label,
        choices=YES_NO,
        coerce=lambda v: v == "yes",
        empty_value=None,
        required=False,
        widget=forms.RadioSelect,
    )


def _choice(label, choices) -> forms.Field:
    return forms.TypedChoiceField(
        label=label,
        choices=[("", "—"), *choices],
        coerce=int,
        empty_value=None,
        required=False,
    )


def _input_field(name: str, label_prefix: str) -> forms.Field:
    """The form field for one named input of the rules (`rules.rule_inputs`)."""

    def label(text):
        return f"{label_prefix} · {text}"

    factories = {
        "diagnosis_date": lambda: forms.DateField(
            label=label(_("Date of diagnosis")), widget=DATE, required=False
        ),
        "severity": lambda: forms.ChoiceField(
            label=label(_("Severity")),
            choices=Severity.choices,
            widget=forms.RadioSelect,
            required=False,
        ),
        "respiratory_rate": lambda: forms.IntegerField(
            label=label(_("Respiratory rate (/min)")), min_value=0, max_value=120, required=False
        ),
        "spo2": lambda: forms.IntegerField(
            label=label(_("SpO2 at rest on room air (%)")),
            min_value=0,
            max_value=100,
            required=False,
        ),
        "pao2_fio2": lambda: forms.IntegerField(
            label=label(_("PaO2/FiO2 (mmHg)")), min_value=0, max_value=1000, required=False
        ),
        "imaging_progression": lambda: forms.BooleanField(
            # xgettext:no-python-format
            label=label(_("Lesions progressing > 50% on imaging within 24 to 48 hours")),
            required=False,
        ),
        "mechanical_ventilation": lambda: forms.BooleanField(
            label=label(_("Respiratory failure needing mechanical ventilation")), required=False
        ),
        "shock": lambda: forms.BooleanField(label=label(_("Shock")), required=False),
        "icu_organ_failure": lambda: forms.BooleanField(
            label=label(_("Other organ failure needing ICU care")), required=False
        ),
        "height_cm": lambda: forms.DecimalField(
            label=label(_("Height (cm)")), max_digits=5, decimal_places=1, required=False
        ),
        "weight_kg": lambda: forms.DecimalField(
            label=label(_("Weight (kg)")), max_digits=5, decimal_places=2, required=False
        ),
        "nyha_class": lambda: _choice(
            label(_("NYHA class")),
            [(0, _("No heart failure"))]
            + [(n, _("Class %(c)s") % {"c": r}) for n, r in rules.NYHA_NUMERALS.items()],
        ),
        "ckd_stage": lambda: _choice(
            label(_("Chronic kidney disease stage")),
            [(0, _("No chronic kidney disease"))] + [(n, str(n)) for n in range(1, 6)],
        ),
        "child_pugh": lambda: _choice(
            label(_("Child-Pugh score")),
            [(0, _("No chronic liver disease"))] + [(n, str(n)) for n in range(5, 16)],
        ),
    }
    return factories[name]()


# Inputs that are not typed on this form: the registry and the consent records give them.
NOT_TYPED = {"date_of_birth", "screening_date", "informed_consent"}
COMPUTED_NOTE = {
    "age_range": _("Computed from the registered date of birth and the date of screening."),
    "informed_consent": _("Satisfied by a consent on the current version (recorded separately)."),
}


class ScreeningForm(forms.Form):
    """One fieldset per criterion, headed by its code; the fields are the rule's inputs.

    Criteria not asked of this participant (E5 for a male) are left out. Every answer may be
    left blank: the decision is then incomplete, never eligible.
    """

    submission_token = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)
    screening_date = forms.DateField(label=_("Date of screening"), widget=DATE)

    def __init__(self, *args, criteria, sex: str, dosing_inputs=(), input_limits=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.criteria = [c for c in criteria if rules.is_asked(c, sex)]
        self.answer_fields: list[str] = []
        fieldsets = [TextFieldset(_("Screening"), "submission_token", "screening_date")]
        # Baseline values the dose plan needs (eGFR for the nirmatrelvir dose): not criteria,
        # but asked here, before randomization, so that no arm's plan waits on them.
        for name in dosing_inputs:
            self.fields[name] = forms.DecimalField(
                label=BASELINE_INPUTS[name],
                min_value=0,
                max_value=250,
                max_digits=5,
                decimal_places=1,
                required=False,
                help_text=_("Needed before randomization, to plan the doses."),
            )
            self.answer_fields.append(name)
        if dosing_inputs:
            fieldsets.append(TextFieldset(_("For the dose plan"), *dosing_inputs))
        for criterion in self.criteria:
            names = []
            for name in rules.rule_inputs(criterion):
                if name in NOT_TYPED or name in self.fields:
                    continue
                if criterion.rule == "yes_no":
                    if name == criterion.code:
                        field = _yes_no_field(f"{criterion.code} · {criterion.localized_text()}")
                    else:
                        field = forms.CharField(
                            label=f"{criterion.code} · " + str(_("Reason")),
                            required=False,
                            max_length=500,
                        )
                else:
                    field = _input_field(name, criterion.code)
                self.fields[name] = field
                self.answer_fields.append(name)
                # Yes/no and severity side by side: one tap each on a ward tablet.
                radios = isinstance(field.widget, forms.RadioSelect)
                names.append(InlineRadios(name) if radios else name)
            if criterion.rule == "yes_no":
                fieldsets.extend(names)  # the field's own label carries the code
            else:
                # The criterion's text is protocol data: shown as text, never compiled.
                legend = f"{criterion.code} · {criterion.localized_text()}"
                note = COMPUTED_NOTE.get(criterion.rule, "")
                fieldsets.append(TextFieldset(legend, *names, note=note))
        # The protocol's plausible limits in the browser too: 0 or -5 cm is caught as it is
        # typed; the service checks them again with its own message.
        for name, limits in (input_limits or {}).items():
            if name in self.fields:  # [low, high] pairs; max_age_years is no field's
                self.fields[name].widget.attrs.update(min=limits[0], max=limits[1])
        self.helper = FormHelper()
        self.helper.layout = Layout(*fieldsets)
        self.helper.add_input(Submit("submit", _("Save screening")))

    def answers(self) -> dict[str, Any]:
        data = self.cleaned_data
        answers = {"screening_date": data["screening_date"]}
        for name in self.answer_fields:
            value = data.get(name)
            answers[name] = None if value == "" else value
        return answers


# --- Consent -------------------------------------------------------------------------------------


class ConsentVersionForm(forms.ModelForm):
    class Meta:
        model = ConsentVersion
        fields = ["version", "language", "irb_approval_date", "effective_date", "document"]
        widgets = {"irb_approval_date": DATE, "effective_date": DATE}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper(_("Add version"))


class ConsentForm(TokenForm):
    version = forms.ModelChoiceField(queryset=None, label=_("Consent version"))
    consented_at = forms.DateTimeField(label=_("Date and time of consent"), widget=DATETIME)
    signer = forms.ChoiceField(
        label=_("Signed by"), choices=Signer.choices, widget=forms.RadioSelect
    )
    lar_name = forms.CharField(
        label=_("Name of the legally authorised representative"), required=False, max_length=200
    )
    lar_relationship = forms.CharField(
        label=_("Relationship to the participant"), required=False, max_length=100
    )
    witness_needed = forms.BooleanField(
        label=_("An impartial witness was needed (the signer cannot read)"), required=False
    )
    witness_name = forms.CharField(
        label=_("Name of the impartial witness"), required=False, max_length=200
    )
    copy_given = forms.BooleanField(label=_("A signed copy was given"), required=False)

    def __init__(self, *args, versions, **kwargs):
        super().__init__(*args, submit_label=_("Record consent"), **kwargs)
        self.fields["version"].queryset = versions
        if len(versions) == 1:
            self.fields["version"].initial = versions[0]


class RefusalForm(TokenForm):
    refused_on = forms.DateField(label=_("Date"), widget=DATE)
    reason = forms.CharField(label=_("Reason"), widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, submit_label=_("Record refusal"), **kwargs)


class WithdrawalForm(TokenForm):
    scope = forms.ChoiceField(
        label=_("What stops"), choices=WithdrawalScope.choices, widget=forms.RadioSelect
    )
    withdrawn_on = forms.DateField(label=_("Date"), widget=DATE)
    reason = forms.CharField(label=_("Reason"), widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, submit_label=_("Record withdrawal"), **kwargs)


class SignoffForm(forms.Form):
    password = forms.CharField(
        label=_("Your password"),
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text=_("Re-enter your password to sign."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = _helper(_("Sign"))
