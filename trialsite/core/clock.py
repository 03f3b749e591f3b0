"""The trial's clock: every "today" of the trial is a site's date, and every time a person
reads is in the site's zone with the zone named.

A Shanghai ward is eight hours ahead of UTC, so from 16:00 UTC the server's date is already
yesterday there: consent in force, screening dates, study days and visit windows are decided
here, never with the server's date. Exports and the audit trail carry UTC with its offset
instead, so that they compare across sites.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.utils import timezone

from .models import Site

# A UTC offset is unambiguous where an abbreviation is not ("CST" is China, Cuba or Chicago).
_SITE_FORMAT = "%Y-%m-%d %H:%M"


def site_today(site: Site) -> date:
    """The calendar date at the site now."""
    return timezone.localdate(timezone=site.zone)


def site_now(site: Site) -> datetime:
    """Now, as an aware datetime in the site's zone."""
    return timezone.localtime(timezone=site.zone)


def site_date(moment: datetime, site: Site) -> date:
    """The calendar date at the site when `moment` happened."""
    return timezone.localtime(moment, site.zone).date()


def utc_offset(moment: datetime) -> str:
    """'UTC+08:00' for an aware datetime in its own zone."""
    offset = moment.strftime("%z")
    return f"UTC{offset[:3]}:{offset[3:]}"


def site_time_text(moment: datetime | None, site: Site) -> str:
    """'2026-11-26 04:21 UTC+08:00': site time with its offset, as pages show it."""
    if moment is None:
        return ""
    local = timezone.localtime(moment, site.zone)
    return f"{local.strftime(_SITE_FORMAT)} {utc_offset(local)}"


def utc_iso(moment: datetime | None) -> str:
    """'2026-11-25T20:21:00+00:00': UTC with its offset, as exports and the audit trail
    carry it (seconds, no fraction)."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()
