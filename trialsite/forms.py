from crispy_forms.helper import FormHelper
from crispy_forms.layout import Submit
from django import forms
from django.utils.translation import gettext_lazy as _

from .models import Site


class ReasonField(forms.CharField):
    """The 'why' of an audited change: required for any change to an existing record."""

    def __init__(self, **kwargs):
        kwargs.setdefault("label", _("Reason for the change"))
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 2}))
        kwargs.setdefault("max_length", 500)
        super().__init__(**kwargs)


class SiteForm(forms.ModelForm):
    reason = ReasonField()

    class Meta:
        model = Site
        fields = ["name", "time_zone", "is_active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.add_input(Submit("submit", _("Save")))
