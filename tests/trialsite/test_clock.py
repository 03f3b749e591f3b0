"""The trial's clock: a site's today and times as its people read them."""

from datetime import UTC, date, datetime

import time_machine

from tests.factories import SiteFactory
from trialsite.core.clock import site_date, site_now, site_time_text, site_today, utc_iso

# 15:59 and 16:01 UTC are 23:59 and 00:01 in Shanghai: the hour where the dates part.
BEFORE_MIDNIGHT_SHANGHAI = datetime(2026, 11, 25, 15, 59, tzinfo=UTC)
AFTER_MIDNIGHT_SHANGHAI = datetime(2026, 11, 25, 16, 1, tzinfo=UTC)


def test_the_sites_today_turns_at_the_sites_midnight(db):
    shanghai = SiteFactory(code="SHE", time_zone="Asia/Shanghai")
    new_york = SiteFactory(code="NYC", time_zone="America/New_York")
    with time_machine.travel(BEFORE_MIDNIGHT_SHANGHAI, tick=False):
        assert site_today(shanghai) == date(2026, 11, 25)
    with time_machine.travel(AFTER_MIDNIGHT_SHANGHAI, tick=False):
        assert site_today(shanghai) == date(2026, 11, 26)
        assert site_today(new_york) == date(2026, 11, 25)
        assert site_now(shanghai).isoformat() == "2026-11-26T00:01:00+08:00"
    # 04:59 UTC is 23:59 the day before in New York (EST, UTC-5).
    with time_machine.travel(datetime(2026, 11, 26, 4, 59, tzinfo=UTC), tick=False):
        assert site_today(new_york) == date(2026, 11, 25)
        assert site_today(shanghai) == date(2026, 11, 26)


def test_times_name_their_offset_never_an_abbreviation(db):
    shanghai = SiteFactory(code="SHE", time_zone="Asia/Shanghai")
    new_york = SiteFactory(code="NYC", time_zone="America/New_York")
    moment = datetime(2026, 11, 25, 20, 21, 30, 123456, tzinfo=UTC)
    assert site_time_text(moment, shanghai) == "2026-11-26 04:21 UTC+08:00"
    assert site_time_text(moment, new_york) == "2026-11-25 15:21 UTC-05:00"
    # Daylight saving time moves the offset, and the text says so.
    assert site_time_text(datetime(2026, 7, 1, 12, tzinfo=UTC), new_york) == (
        "2026-07-01 08:00 UTC-04:00"
    )
    assert site_date(moment, shanghai) == date(2026, 11, 26)
    assert utc_iso(moment) == "2026-11-25T20:21:30+00:00"
    assert site_time_text(None, shanghai) == utc_iso(None) == ""
