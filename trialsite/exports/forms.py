from crispy_forms.helper import FormHelper
from crispy_forms.layout import Submit
from django import forms
from django.utils.translation import gettext_lazy as _

from trialsite.core.models import Site

from .columns import ExportOptions
from .datasets import DATASETS
from .deidentify import DateMode


class ExportForm(forms.Form):
    """What to export. The identified option is on the form of the trial administrator only."""

    datasets = forms.MultipleChoiceField(
        label=_("Datasets"),
        widget=forms.CheckboxSelectMultiple,
        choices=[(name, name) for name in DATASETS],
        initial=list(DATASETS),
        error_messages={"required": _("Choose at least one dataset.")},
    )
    sites = forms.ModelMultipleChoiceField(
        label=_("Sites"),
        queryset=Site.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: every site."),
    )
    labels = forms.BooleanField(
        label=_("Labels instead of codes"),
        required=False,
        help_text=_("Codes by default; the dictionary gives each code's label either way."),
    )
    bom = forms.BooleanField(
        label=_("Byte-order mark for Excel"),
        required=False,
        help_text=_("So that Excel reads Chinese text correctly."),
    )
    date_mode = forms.ChoiceField(
        label=_("Dates"),
        choices=DateMode.choices,
        initial=DateMode.AS_RECORDED,
        help_text=_(
            "Exact dates of a patient's care count as identifiers under HIPAA Safe Harbor: "
            "shift them or use study days when the data leave the trial team."
        ),
    )
    free_text = forms.BooleanField(
        label=_("Include free-text columns"),
        required=False,
        help_text=_("Reasons and details typed by staff may name people: off by default."),
    )
    odm = forms.BooleanField(
        label=_("CDISC ODM 1.3.2 XML of the clinical data (odm.xml)"),
        required=False,
        help_text=_(
            "For sponsors and EDC systems (OpenClinica, REDCap): the same participants, "
            "values and de-identification as the CSVs, with the audit records."
        ),
    )
    identified = forms.BooleanField(
        label=_("Identified export (names, MRNs, contacts, dates of birth)"), required=False
    )
    reason = forms.CharField(
        label=_("Why identifiers are needed"),
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Kept with the record of this export."),
    )

    def __init__(self, *args, sites, may_identify: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["sites"].queryset = sites
        if not may_identify:
            del self.fields["identified"]
            del self.fields["reason"]
        self.helper = FormHelper()
        self.helper.add_input(Submit("submit", _("Start the export")))

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("identified") and not (cleaned.get("reason") or "").strip():
            self.add_error("reason", _("Say why identifiers are needed in this export."))
        return cleaned

    def options(self, *, site_ids, include_concealed: bool) -> ExportOptions:
        """`site_ids`: the sites the user may see (None: all); the ticked ones narrow them."""
        data = self.cleaned_data
        chosen = set(data["datasets"])
        if data["sites"]:
            site_ids = frozenset(site.pk for site in data["sites"])
        return ExportOptions(
            datasets=tuple(name for name in DATASETS if name in chosen),
            labels=data["labels"],
            bom=data["bom"],
            date_mode=data["date_mode"],
            free_text=data["free_text"],
            odm=data["odm"],
            identified=data.get("identified", False),
            reason=data.get("reason", ""),
            site_ids=site_ids,
            include_concealed=include_concealed,
        )
