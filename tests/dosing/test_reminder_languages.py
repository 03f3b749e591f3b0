"""A reminder reaches each reader in their language: their own choice, else their site's."""

import pytest
import time_machine
from django.core import mail

from dosing.services import reminders_dispatch
from tests.dosing.conftest import randomize, screened_participant, site_time
from trialsite.core.audit import audited_save
from trialsite.core.models import UserPreference

pytestmark = pytest.mark.django_db


@pytest.fixture
def day1_infusion(protocol, site_a, coordinator_a, investigator_a):
    participant = screened_participant(site=site_a, user=coordinator_a)
    at = site_time(site_a, 2026, 3, 10, 10, 0)
    with time_machine.travel(at, tick=False):
        return randomize(participant, "MSC", at=at, user=coordinator_a)[0]


def test_each_reader_gets_the_reminder_in_their_language(
    day1_infusion, site_a, coordinator_a, investigator_a
):
    audited_save(UserPreference(user=coordinator_a, language="zh-hans"), user=coordinator_a)
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 8, 0, 30), tick=False):
        result = reminders_dispatch(worker="test")
    assert result.sent == 1  # one reminder row: the 1 h one, in two messages
    chinese, english = sorted(mail.outbox, key=lambda m: m.subject)  # "1 小时" < "Due"
    number = day1_infusion.participant.study_number
    assert english.to == [investigator_a.email]
    assert english.subject == (
        f"Due in 1 h: {number} · UC-MSC suspension dose 1/2 (day 1) 2026-03-11 09:00 Asia/Shanghai"
    )
    assert chinese.to == [coordinator_a.email]
    assert chinese.subject == (
        f"1 小时后到期: {number} · 脐带间充质干细胞悬液 第 1/2 次给药（第 1 天） "
        "2026-03-11 09:00 Asia/Shanghai"
    )
    assert "一次研究给药将在 1 小时后到期。" in chinese.body
    assert "给药: 脐带间充质干细胞悬液, 静脉输注, 第 1/2 次给药，研究第 1 天" in chinese.body
    assert "在此记录: http" in chinese.body


def test_a_site_that_works_in_chinese_sends_chinese_to_who_chose_nothing(
    day1_infusion, site_a, coordinator_a, investigator_a
):
    site_a.language = "zh-hans"
    audited_save(site_a, reason="The site works in Chinese")
    audited_save(UserPreference(user=investigator_a, language="en"), user=investigator_a)
    with time_machine.travel(site_time(site_a, 2026, 3, 11, 8, 0, 30), tick=False):
        reminders_dispatch(worker="test")
    by_reader = {m.to[0]: m.subject for m in mail.outbox if "09:00" in m.subject}
    assert by_reader[coordinator_a.email].startswith("1 小时后到期: ")
    assert by_reader[investigator_a.email].startswith("Due in 1 h: ")
