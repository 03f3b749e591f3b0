"""Forms of dosing: recording a dose (given or not given), correcting or voiding a record."""

from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Layout, Submit
from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from trialsite.core.forms import ReasonField

from .models import AdministrationOutcome
from .rules import plain_amount

DATETIME = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
# Shown only once the time typed is far outside the window, right under it.
CONFIRM_FIELDS = ("confirm_outside_window", "outside_window_reason")


class DoseRecordForm(forms.Form):
    """The time is typed in the site's time zone (the one the ward clock shows)."""

    submission_token = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)
    outcome = forms.ChoiceField(
        label=_("Outcome"), choices=AdministrationOutcome.choices, widget=forms.RadioSelect
    )
    given_at = forms.DateTimeField(label=_("Given at (site time)"), required=False, widget=DATETIME)
    confirm_outside_window = forms.BooleanField(
        label=_("I confirm this time: the dose was given this far outside its window."),
        required=False,
    )
    outside_window_reason = forms.CharField(
        label=_("Why was it given so far outside its window?"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    amount = forms.DecimalField(
        label=_("Amount given"), required=False, max_digits=20, decimal_places=4
    )
    route = forms.CharField(label=_("Route"), required=False, max_length=40)
    lot_number = forms.CharField(label=_("Lot or batch number"), required=False, max_length=60)
    infusion_reaction = forms.BooleanField(
        label=_("Infusion reaction"),
        required=False,
        help_text=_("If yes, report it as an adverse event."),
    )
    not_given_reason = forms.CharField(
        label=_("Reason not given"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    submit_label = _("Record")

    def __init__(self, *args, zone: ZoneInfo, unit: str = "", amount_range=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.zone = zone
        if unit:
            self.fields["amount"].label = _("Amount given (%(unit)s)") % {"unit": unit}
        # The schedule's plausible range in the browser too (a slip of the keyboard is caught
        # as it is typed); the service checks it again and says why.
        self.fields["amount"].widget.attrs["step"] = "any"
        if amount_range:
            low, high = amount_range
            self.fields["amount"].widget.attrs.update(min=plain_amount(low), max=plain_amount(high))
        # Once shown, the confirmation stays on the page with what was typed in it.
        self.confirming = self.is_bound and "outside_window_reason" in self.data
        self.helper = FormHelper()
        self.helper.add_input(Submit("submit", self.submit_label))
        self.lay_out()

    def lay_out(self) -> None:
        shown = [n for n in self.fields if n not in CONFIRM_FIELDS]
        if self.confirming:
            at = shown.index("given_at") + 1
            shown[at:at] = CONFIRM_FIELDS
        self.helper.layout = Layout(*shown)

    def ask_to_confirm(self) -> None:
        self.confirming = True
        self.lay_out()

    def clean_given_at(self):
        value = self.cleaned_data.get("given_at")
        if value is None:
            return None
        # The browser sends a wall-clock time: it is the site's, whatever the server's zone.
        naive = timezone.make_naive(value) if timezone.is_aware(value) else value
        return timezone.make_aware(naive, self.zone)


class CorrectionForm(DoseRecordForm):
    reason = forms.CharField(label=_("Reason for the correction"), max_length=200)
    submit_label = _("Save correction")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.fields["outcome"]
        del self.fields["submission_token"]
        self.lay_out()


class VoidForm(forms.Form):
    reason = ReasonField(label=_("Reason for voiding this record"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.add_input(Submit("submit", _("Void this record"), css_class="btn-danger"))
