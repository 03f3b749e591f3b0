"""`{% load dosing %}{% dosing_timeline participant %}`: the participant's dosing timeline,
for any page that shows a participant (the participant page includes it)."""

from django import template
from django.utils import timezone

from dosing.rules import scientific as _scientific
from dosing.selectors import dose_timeline

register = template.Library()


@register.inclusion_tag("dosing/_timeline.html", takes_context=True)
def dosing_timeline(context, participant, can_write=False):
    return {
        "participant": participant,
        "timeline": dose_timeline(participant),
        "can_write": can_write or context.get("can_write", False),
        "now": timezone.now(),
        "request": context.get("request"),
    }


@register.filter
def scientific(value):
    return _scientific(value) if value not in (None, "") else ""
