"""`{% load trial_time %}`: times as the trial's pages show them.

`{{ moment|site_time:site }}` is site time with its offset ("2026-11-26 04:21 UTC+08:00"),
`{{ moment|site_date:site }}` the site's calendar date of that moment, and
`{{ moment|utc_time }}` a time that belongs to no site (lists, the audit trail) in UTC, and
`{{ moment|utc_seconds }}` the same to the second (an electronic signature's time).
"""

from datetime import UTC

from django import template

from trialsite.core.clock import site_date as _site_date
from trialsite.core.clock import site_time_text

register = template.Library()


@register.filter
def site_time(moment, site) -> str:
    return site_time_text(moment, site) if moment else ""


@register.filter
def site_date(moment, site) -> str:
    return _site_date(moment, site).isoformat() if moment else ""


@register.filter
def utc_time(moment) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if moment else ""


@register.filter
def utc_seconds(moment) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if moment else ""
