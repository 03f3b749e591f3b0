"""A Shanghai ward in Chinese, on a phone (390 px): a coordinator registers a patient, screens
them, records consent on the Chinese consent version; the investigator signs off; the
coordinator randomizes and, on day 1, records the first infusion. Every page they see is in
Chinese, from the site's language, though the browser asks for English. The screenshots are
kept in tests/output/screenshots (fonts-noto-cjk draws the characters)."""

import random
from datetime import datetime, time, timedelta

import pytest
import time_machine
from django.utils import timezone

from arms.models import Allocation, ListEntry
from arms.services import randomization_list_activate, randomization_list_generate
from dosing.models import Administration
from enrollment.models import Consent
from tests.conftest import screenshot, second_factor, totp_device_for
from tests.factories import PASSWORD, ConsentVersionFactory
from trialsite.core.audit import audited_save
from trialsite.core.clock import site_today

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def list_drawing_first(arm_code: str, *, site, administrator):
    """An active list whose first severe entry at `site` is `arm_code`: the journey goes on to
    a dose, which the standard-therapy arm has none of."""
    for seed in range(100):
        drafted = randomization_list_generate(
            user=administrator,
            per_stratum=3,
            rng=random.Random(seed),  # noqa: S311 - a test's reproducible list
        )
        first = (
            ListEntry.objects.filter(
                stratum__randomization_list=drafted, stratum__site=site, stratum__severity="severe"
            )
            .order_by("sequence")
            .select_related("arm")
            .first()
        )
        if first.arm.code == arm_code:
            return randomization_list_activate(user=administrator, randomization_list=drafted)
    raise AssertionError(f"no seed under 100 draws {arm_code} first")


@pytest.fixture
def shanghai(transactional_db, protocol, site_a, coordinator_a, investigator_a, administrator):
    site_a.language = "zh-hans"
    audited_save(site_a, reason="The site works in Chinese")
    ConsentVersionFactory(version="1.0", language="en", created_by=administrator)
    ConsentVersionFactory(version="1.0", language="zh-hans", created_by=administrator)
    list_drawing_first("MSC", site=site_a, administrator=administrator)
    coordinator_a.first_name, coordinator_a.last_name = "林", "护士"
    coordinator_a.save()
    return site_a


@pytest.fixture
def phone(chromium, live_server, request):
    """A phone whose browser asks for English: the Chinese comes from the site."""
    context = chromium.new_context(
        base_url=live_server.url, viewport=PHONE, locale="en-US", device_scale_factor=2
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def log_in(page, user):
    device = totp_device_for(user)
    page.goto("/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.locator("main form [type=submit]").click()
    page.wait_for_selector("[data-testid=current-user]", state="attached")
    if device is not None:
        second_factor(page, device)


def open_menu(page):
    # The page's scripts first (the toggler does nothing before Bootstrap's script runs),
    # then the menu fully open: a tap while it slides open can land on nothing.
    page.wait_for_load_state("load")
    toggler = page.locator(".navbar-toggler")
    if toggler.is_visible() and toggler.get_attribute("aria-expanded") != "true":
        toggler.click()
        page.locator(".navbar-collapse.show:not(.collapsing)").wait_for(state="visible")


def log_out(page):
    open_menu(page)
    with page.expect_navigation(url="**/accounts/login/"):
        page.get_by_role("button", name="退出登录").click()


def test_a_chinese_ward_enrolls_randomizes_and_doses_on_a_phone(
    phone, shanghai, coordinator_a, investigator_a
):
    page = phone
    zone = shanghai.zone
    start = datetime.combine(site_today(shanghai), time(10, 0), tzinfo=zone)
    with time_machine.travel(start, tick=True):
        log_in(page, coordinator_a)
        assert page.locator("html").get_attribute("lang") == "zh-hans"
        screenshot(page, "zh-1-home")

        page.goto("/participants/register/")
        assert page.get_by_role("heading", name="登记患者").is_visible()
        page.fill("#id_name", "王芳")
        page.fill("#id_mrn", "SHE-H-66201")
        page.check("input[name=sex][value=F]")
        page.fill("#id_date_of_birth", "1968-03-12")
        screenshot(page, "zh-2-register-form")
        page.get_by_role("button", name="登记").click()
        page.wait_for_selector("text=已登记为 SHE-0001。")
        screenshot(page, "zh-3-registered")

        page.get_by_role("link", name="筛选", exact=True).click()
        today = site_today(shanghai)
        page.fill("#id_diagnosis_date", (today - timedelta(days=2)).isoformat())
        page.check("input[name=severity][value=severe]")
        page.fill("#id_respiratory_rate", "32")
        page.fill("#id_height_cm", "160")
        page.fill("#id_weight_kg", "58")
        page.fill("#id_egfr", "88")
        page.select_option("#id_nyha_class", "1")
        page.select_option("#id_ckd_stage", "0")
        page.select_option("#id_child_pugh", "0")
        for code in ("E1", "E2", "E3", "E4", "E5", "E6", "E7", "E9", "E10", "E11", "E12"):
            page.check(f"input[name={code}][value=no]")
        form = page.content()
        assert "年龄 18～75 岁（含），性别不限" in form  # the protocol's own Chinese
        assert "妊娠或哺乳期" in form
        screenshot(page, "zh-4-screening-form")
        page.get_by_role("button", name="保存筛选").click()
        page.wait_for_selector("text=筛选已保存：符合入组条件。")
        assert page.get_by_test_id("decision").first.inner_text() == "符合入组条件"
        screenshot(page, "zh-5-screened-eligible")

        page.get_by_role("link", name="记录知情同意").click()
        versions = page.locator("#id_version option").all_inner_texts()
        assert "v1.0（简体中文）" in versions and "v1.0（英文）" in versions
        page.select_option("#id_version", label="v1.0（简体中文）")
        consented = timezone.localtime(timezone.now() - timedelta(minutes=20), zone)
        page.fill("#id_consented_at", consented.strftime("%Y-%m-%dT%H:%M"))
        page.check("input[name=signer][value=lar]")
        page.fill("#id_lar_name", "王磊")
        page.fill("#id_lar_relationship", "儿子")
        page.check("#id_copy_given")
        screenshot(page, "zh-6-consent-by-legal-representative")
        page.get_by_role("button", name="记录知情同意").click()
        page.wait_for_selector("text=知情同意已记录。")
        assert "最近一次筛选尚无研究者签字确认。" in page.get_by_test_id("gate").inner_text()
        screenshot(page, "zh-7-consent-recorded")
        consent = Consent.objects.select_related("version").get()
        assert (consent.version.version, consent.version.language) == ("1.0", "zh-hans")
        log_out(page)

        log_in(page, investigator_a)
        page.goto("/participants/SHE-0001/")
        page.get_by_role("link", name="签字确认入组资格", exact=True).click()
        assert "我确认该患者符合入组条件。" in page.content()
        page.fill("#id_password", PASSWORD)
        screenshot(page, "zh-8-investigator-signs-off")
        page.get_by_role("button", name="签名").click()
        page.wait_for_selector("text=入组资格已签字确认。")
        assert page.get_by_test_id("ready").inner_text() == "可以随机分组"
        log_out(page)

        log_in(page, coordinator_a)
        page.goto("/participants/SHE-0001/")
        page.get_by_test_id("ready").wait_for()
        page.goto("/arms/randomize/SHE-0001/")
        screenshot(page, "zh-9-randomize")
        page.get_by_test_id("randomize").click()
        page.wait_for_url("**/arms/allocations/SHE-0001/")
        allocation = Allocation.objects.select_related("arm").get()
        assert allocation.arm.code == "MSC"
        assert "脐带间充质干细胞" in page.get_by_test_id("arm").inner_text()
        screenshot(page, "zh-10-randomized")

    # Day 1, 09:30 at the site: the first infusion is due. The session has long expired.
    day1 = datetime.combine(site_today(shanghai) + timedelta(days=1), time(9, 30), tzinfo=zone)
    with time_machine.travel(day1, tick=True):
        log_in(page, coordinator_a)
        page.goto("/dosing/today/")
        row = page.get_by_test_id("worklist-row").filter(has_text="SHE-0001")
        assert "第 1/2 次，第 1 天" in row.inner_text()
        screenshot(page, "zh-11-todays-doses")
        row.get_by_role("link", name="记录").click()
        page.get_by_label("批号").fill("UCMSC-2611-A")
        screenshot(page, "zh-12-record-dose")
        page.get_by_role("button", name="记录").click()
        page.wait_for_url("**/dosing/today/")
        assert page.get_by_text("SHE-0001 第 1 次给药已记录。").is_visible()
        screenshot(page, "zh-13-dose-recorded")

    record = Administration.objects.get()
    assert (record.lot_number, record.recorded_by) == ("UCMSC-2611-A", coordinator_a)
