"""Forms of dosing: recording a dose (given or not given), correcting a record."""

from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Submit
from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .models import AdministrationOutcome

DATETIME = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class DoseRecordForm(forms.Form):
    """The time is typed in the site's time zone (the one the ward clock shows)."""

    submission_token = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)
    outcome = forms.ChoiceField(
        label=_("Outcome"), choices=AdministrationOutcome.choices, widget=forms.RadioSelect
    )
    given_at = forms.DateTimeField(label=_("Given at (site time)"), required=False, widget=DATETIME)
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

    def __init__(self, *args, zone: ZoneInfo, **kwargs):
        super().__init__(*args, **kwargs)
        self.zone = zone
        self.helper = FormHelper()
        self.helper.add_input(Submit("submit", _("Record")))

    def clean_given_at(self):
        value = self.cleaned_data.get("given_at")
        if value is None:
            return None
        # The browser sends a wall-clock time: it is the site's, whatever the server's zone.
        naive = timezone.make_naive(value) if timezone.is_aware(value) else value
        return timezone.make_aware(naive, self.zone)


class CorrectionForm(DoseRecordForm):
    reason = forms.CharField(label=_("Reason for the correction"), max_length=200)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.fields["outcome"]
        del self.fields["submission_token"]
        self.helper.inputs[0].value = _("Save correction")
