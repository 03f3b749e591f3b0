"""De-identification (HIPAA Safe Harbor as the yardstick): ages capped at 90+, and each
participant's dates either as recorded, shifted by a secret number of days, or reduced to
study days.

Names, MRNs, contacts and dates of birth are never columns of a de-identified export (see the
`identifier` columns in `datasets.py`); this module turns what stays into what may leave.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from django.db.models import TextChoices
from django.utils.translation import gettext_lazy as _

# Safe Harbor: ages over 89 are aggregated into one category.
OLDEST_SHOWN_AGE = 89
AGGREGATED_AGE = "90+"
# A shifted date moves back by 1 to this many days: the same shift for every date of one
# participant within one bundle, a fresh one in the next bundle.
MAX_SHIFT_DAYS = 365


class DateMode(TextChoices):
    AS_RECORDED = "as_recorded", _("Dates as recorded")
    SHIFTED = "shifted", _("Dates shifted by a secret number of days per participant")
    STUDY_DAYS = "study_days", _("Study days (day 0: the site's date of randomization)")


def age_in_years(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def age_shown(born: date | None, on: date | None) -> int | str | None:
    """Whole years, with every age over 89 as "90+"."""
    if born is None or on is None:
        return None
    years = age_in_years(born, on)
    return AGGREGATED_AGE if years > OLDEST_SHOWN_AGE else years


def shift_days(salt: bytes, participant_id: int) -> int:
    digest = hmac.new(salt, str(participant_id).encode(), hashlib.sha256).digest()
    return 1 + int.from_bytes(digest[:4], "big") % MAX_SHIFT_DAYS


class Dates:
    """How one export writes a participant's dates and times.

    `day_zero_of(participant_id)` gives the participant's day 0 (a date) for study days; it is
    asked only in that mode. A row about no participant (an account in the audit trail) keeps
    its date when shifting and has no study day."""

    def __init__(self, mode: str, day_zero_of: Callable[[int], date | None] | None = None):
        self.mode = DateMode(mode)
        self._salt = secrets.token_bytes(32)
        self._day_zero_of = day_zero_of

    @property
    def as_study_days(self) -> bool:
        return self.mode == DateMode.STUDY_DAYS

    def date(self, value: date, participant_id: int | None):
        if self.mode == DateMode.AS_RECORDED:
            return value.isoformat()
        if self.mode == DateMode.SHIFTED:
            if participant_id is None:
                return value.isoformat()
            return (value - timedelta(days=shift_days(self._salt, participant_id))).isoformat()
        day_zero = self._day_zero_of(participant_id) if participant_id is not None else None
        return None if day_zero is None else (value - day_zero).days

    def moment(self, value: datetime, participant_id: int | None, zone=None):
        """UTC with its offset; a study day is counted in the site's calendar (`zone`)."""
        utc = value.astimezone(UTC).replace(microsecond=0)
        if self.mode == DateMode.AS_RECORDED:
            return utc.isoformat()
        if self.mode == DateMode.SHIFTED:
            if participant_id is None:
                return utc.isoformat()
            return (utc - timedelta(days=shift_days(self._salt, participant_id))).isoformat()
        local_date = value.astimezone(zone).date() if zone is not None else utc.date()
        return self.date(local_date, participant_id)
