"""Crispy layout objects that show protocol text as text.

crispy's own `Fieldset` compiles its legend as a Django template and prints it unescaped, and
its `HTML` compiles its content: a criterion's text (typed in the admin or the protocol file)
would then run as template code (`{{ user.password }}`) or as script in every viewer's
session. These render the text through our own template, autoescaped and never compiled.
"""

from __future__ import annotations

from crispy_forms.layout import LayoutObject
from crispy_forms.utils import TEMPLATE_PACK
from django.template.loader import render_to_string


class TextFieldset(LayoutObject):
    """A fieldset headed by a plain-text legend, with an optional plain-text note under it."""

    template = "enrollment/_fieldset.html"

    def __init__(self, legend, *fields, note=""):
        self.legend = legend
        self.fields = list(fields)
        self.note = note

    def render(self, form, context, template_pack=TEMPLATE_PACK, **kwargs):
        fields = self.get_rendered_fields(form, context, template_pack, **kwargs)
        return render_to_string(
            self.template, {"legend": self.legend, "note": self.note, "fields": fields}
        )
