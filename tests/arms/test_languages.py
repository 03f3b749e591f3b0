"""Arms in two languages: the allocation notice in each investigator's language; the roster's
CSV in English whatever the page's language, so that exports compare."""

import csv
import io
import uuid

import pytest
from django.urls import reverse

from arms import services
from arms.models import Allocation
from tests.conftest import verified_login
from tests.factories import bulk_allocated
from trialsite.core.audit import audited_save
from trialsite.core.languages import SESSION_KEY
from trialsite.core.models import UserPreference
from trialsite.core.services import site_update

pytestmark = pytest.mark.django_db


def test_the_allocation_notice_reaches_each_investigator_in_their_language(
    ready_a, site_a, coordinator_a, investigator_a, administrator, mailoutbox
):
    from tests.factories import user_with_role
    from trialsite.core.models import Role

    site_update(site=site_a, user=administrator, reason="Works in Chinese", language="zh-hans")
    english_reader = user_with_role(Role.INVESTIGATOR, site_a, username="eve")
    audited_save(UserPreference(user=english_reader, language="en"), user=english_reader)
    allocation = services.participant_randomize(
        participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    services.allocation_notices_sweep()

    by_reader = {tuple(m.to): m for m in mailoutbox}
    assert set(by_reader) == {(investigator_a.email,), (english_reader.email,)}
    arm, number = allocation.arm, ready_a.study_number
    chinese = by_reader[(investigator_a.email,)]
    assert chinese.subject == f"已随机分组：{number} 分入 {arm.code}"
    assert "已于 " in chinese.body and f"随机分入 {arm.code} 组（{arm.name_zh}）" in chinese.body
    english = by_reader[(english_reader.email,)]
    assert english.subject == f"Randomized: {number} to {arm.code}"
    assert f"was randomized to arm {arm.code} ({arm.name})" in english.body


def test_the_roster_csv_is_english_on_a_chinese_page(
    active_list, site_a, coordinator_a, investigator_a, client
):
    bulk_allocated(site=site_a, user=coordinator_a, randomization_list=active_list, count=2)
    verified_login(client, investigator_a)
    session = client.session
    session[SESSION_KEY] = "zh-hans"
    session.save()
    page = client.get(reverse("arms:roster"))
    assert page.headers["Content-Language"] == "zh-hans" and "研究编号" in page.text

    exported = list(csv.reader(io.StringIO(client.get(reverse("arms:roster_csv")).text)))
    assert exported[0][:3] == ["Study number", "Site", "Arm"]
    statuses = {row[-1] for row in exported[1:]}
    assert statuses == {"On study"}
    assert Allocation.objects.count() == 2
