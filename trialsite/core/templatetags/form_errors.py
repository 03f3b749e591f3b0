"""The error summary at the top of a page whose form was refused.

base.html asks for it once, so every form of the site gets it: the tag looks through the page's
context for bound forms (and filter forms) with errors, and lists each message with a link to
its field, or to the form's own errors when the message belongs to no field.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import template
from django.forms import BaseForm
from django.forms.forms import NON_FIELD_ERRORS
from django_filters import FilterSet

register = template.Library()


@dataclass(frozen=True)
class SummaryEntry:
    label: str
    message: str
    anchor: str


def non_field_errors_id(form: BaseForm) -> str:
    """The id of the block that shows the form's own errors (templates/bootstrap5/errors.html)."""
    return f"{form.prefix}-non-field-errors" if form.prefix else "non-field-errors"


def _field_anchor(form: BaseForm, name: str) -> str:
    field = form[name]
    if field.is_hidden or not field.auto_id:
        return non_field_errors_id(form)
    # Radios and checkbox groups have no single id: their first option stands for them.
    return field.id_for_label or f"{field.auto_id}_0"


def form_errors(form: BaseForm) -> list[SummaryEntry]:
    entries = []
    for name, messages in form.errors.items():
        if name == NON_FIELD_ERRORS:
            label, anchor = "", non_field_errors_id(form)
        else:
            label, anchor = form[name].label, _field_anchor(form, name)
        entries.extend(SummaryEntry(label, message, anchor) for message in messages)
    return entries


def _forms_in(context) -> list[BaseForm]:
    found, seen = [], set()
    for value in context.flatten().values():
        form = value.form if isinstance(value, FilterSet) else value
        if isinstance(form, BaseForm) and form.is_bound and id(form) not in seen:
            seen.add(id(form))
            found.append(form)
    return found


@register.inclusion_tag("_error_summary.html", takes_context=True)
def error_summary(context):
    return {"entries": [entry for form in _forms_in(context) for entry in form_errors(form)]}
