import uuid

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Submit
from django import forms
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _

from .services import MAX_PER_STRATUM

MAX_UPLOAD_BYTES = 5 * 1024 * 1024


class _CrispyForm(forms.Form):
    submit_label = _("Save")
    # What the button says while the request runs; static/js/submit-once.js disables it.
    busy_label = _("Saving…")
    form_action = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.form_action = self.form_action
        self.helper.attrs = {"data-submit-once": "", "data-busy-label": self.busy_label}
        self.helper.add_input(Submit("submit", self.submit_label))


class _StoredOnceForm(_CrispyForm):
    """Carries a key made when the form is shown: a second click or a resent request sends
    the same key, and the service stores one list for it (arms.services.ListAlreadyStored)."""

    idempotency_key = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4, required=False)


class GenerateListForm(_StoredOnceForm):
    submit_label = _("Generate a draft list")
    busy_label = _("Generating the list…")
    # The box on the lists page posts here too.
    form_action = reverse_lazy("arms:list_generate")
    per_stratum = forms.IntegerField(
        label=_("Entries per stratum (at least)"),
        min_value=1,
        max_value=MAX_PER_STRATUM,
        initial=200,
        help_text=_("Each stratum gets complete blocks until it has at least this many."),
    )
    note = forms.CharField(label=_("Note"), max_length=200, required=False)


class UploadListForm(_StoredOnceForm):
    submit_label = _("Check and store the list")
    busy_label = _("Checking and storing the list…")
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_("Columns: stratum, sequence, arm, block, block_size. UTF-8."),
    )
    note = forms.CharField(label=_("Note"), max_length=200, required=False)

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(_("The file is larger than 5 MB."))
        try:
            return upload.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise forms.ValidationError(_("The file is not UTF-8 text.")) from exc


class RandomizeForm(forms.Form):
    """Carries the idempotency key: rendered once with the page, so a double click or a
    resubmitted request sends the same key."""

    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)


class MarkInErrorForm(_CrispyForm):
    submit_label = _("Mark in error")
    reason = forms.CharField(
        label=_("Why this randomization is in error"), widget=forms.Textarea(attrs={"rows": 3})
    )
