"""Which language a page speaks: the user's choice (kept with the account), else their site's,
else the browser's; and the protocol's own texts in the page's language."""

import pytest
from django.test import Client
from django.utils import translation

from enrollment.models import EligibilityCriterion
from tests.conftest import totp_code, totp_device_for
from tests.factories import PASSWORD
from trialsite.core.audit import audited_save
from trialsite.core.models import UserPreference

pytestmark = pytest.mark.django_db

CHINESE = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}
ENGLISH = {"HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9"}


@pytest.fixture
def chinese_site(site_a):
    site_a.language = "zh-hans"
    return audited_save(site_a, reason="The site works in Chinese")


def logged_in(user, **headers) -> Client:
    """A fresh browser, logged in through the login form as a person would, with the second
    factor's code for a user who needs one."""
    device = totp_device_for(user)
    client = Client(**headers)
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302
    if device is not None:
        assert client.post("/accounts/mfa/verify/", {"code": totp_code(device)}).status_code == 302
    return client


def page_language(response) -> str:
    return response.headers["Content-Language"]


def test_a_coordinator_who_chose_nothing_reads_her_sites_language(
    protocol, chinese_site, coordinator_a
):
    response = logged_in(coordinator_a, **ENGLISH).get("/participants/")
    assert page_language(response) == "zh-hans"
    assert '<html lang="zh-hans">' in response.text
    assert "登记患者" in response.text and "Register a patient" not in response.text


def test_an_english_sites_coordinator_reads_english_whatever_her_browser_asks(
    protocol, site_a, coordinator_a
):
    assert page_language(logged_in(coordinator_a, **CHINESE).get("/participants/")) == "en"


def test_without_a_site_or_a_choice_the_browser_decides(protocol, chinese_site, data_manager):
    assert page_language(logged_in(data_manager, **CHINESE).get("/participants/")) == "zh-hans"
    assert page_language(logged_in(data_manager, **ENGLISH).get("/participants/")) == "en"


def test_a_choice_is_kept_with_the_account_and_follows_her_to_another_tablet(
    protocol, chinese_site, coordinator_a
):
    ward_tablet = logged_in(coordinator_a, **CHINESE)
    response = ward_tablet.post("/i18n/language/", {"language": "en", "next": "/participants/"})
    assert response.status_code == 302 and response.headers["Location"] == "/participants/"
    assert page_language(ward_tablet.get("/participants/")) == "en"
    preference = UserPreference.objects.get(user=coordinator_a)
    assert preference.language == "en"
    assert preference.history.get().history_user == coordinator_a

    other_tablet = logged_in(coordinator_a, **CHINESE)
    assert page_language(other_tablet.get("/participants/")) == "en"

    other_tablet.post("/i18n/language/", {"language": "zh-hans", "next": "/"})
    other_tablet.post("/i18n/language/", {"language": "zh-hans", "next": "/"})
    preference.refresh_from_db()
    assert preference.language == "zh-hans"
    assert [h.history_change_reason for h in preference.history.order_by("history_id")] == [
        "",
        "Language chosen in the navigation",
    ]


def test_an_unknown_language_changes_nothing(protocol, chinese_site, coordinator_a):
    client = logged_in(coordinator_a)
    client.post("/i18n/language/", {"language": "fr", "next": "/"})
    assert not UserPreference.objects.exists()
    assert page_language(client.get("/participants/")) == "zh-hans"


def test_a_read_only_monitor_may_still_choose_a_language(protocol, site_a, monitor):
    client = logged_in(monitor, **ENGLISH)
    response = client.post("/i18n/language/", {"language": "zh-hans", "next": "/"})
    assert response.status_code == 302
    assert UserPreference.objects.get(user=monitor).language == "zh-hans"
    assert page_language(client.get("/participants/")) == "zh-hans"


def test_the_login_page_offers_the_choice_before_anyone_is_known(protocol):
    client = Client(**ENGLISH)
    page = client.get("/accounts/login/")
    assert 'action="/i18n/language/"' in page.text
    assert '<option value="zh-hans" lang="zh-hans">简体中文</option>' in page.text
    client.post("/i18n/language/", {"language": "zh-hans", "next": "/accounts/login/"})
    assert "登录" in client.get("/accounts/login/").text
    assert not UserPreference.objects.exists()


def test_the_protocol_file_gives_each_criterion_and_arm_its_chinese(protocol):
    i1 = EligibilityCriterion.objects.get(protocol=protocol, code="I1")
    msc = protocol.arms.get(code="MSC")
    schedule = msc.dose_schedules.get()
    with translation.override("zh-hans"):
        assert i1.localized_text() == "年龄 18～75 岁（含），性别不限"
        assert str(msc) == "MSC – 脐带间充质干细胞"
        assert (schedule.localized_product(), schedule.localized_route()) == (
            "脐带间充质干细胞悬液",
            "静脉输注",
        )
        assert protocol.localized_title() == "脐带间充质干细胞治疗重型和危重型新型冠状病毒肺炎患者"
    with translation.override("en"):
        assert i1.localized_text() == "Age 18 to 75 inclusive, any sex"
        assert str(msc) == "MSC – UC-MSCs"
        assert schedule.localized_route() == "intravenous"


def test_the_protocol_file_gives_each_visit_its_chinese(protocol):
    with translation.override("zh-hans"):
        assert [v.localized_name() for v in protocol.visits.all()] == [
            "基线",
            "第1天",
            "第4天",
            "第7天",
            "第14天",
            "第28天",
        ]
    with translation.override("en"):
        assert protocol.visits.get(code="D0").localized_name() == "Baseline"


def test_a_text_without_its_chinese_shows_the_english_on_a_chinese_page(protocol):
    i1 = EligibilityCriterion.objects.get(protocol=protocol, code="I1")
    i1.text_zh = ""
    with translation.override("zh-hans"):
        assert i1.localized_text() == "Age 18 to 75 inclusive, any sex"


def test_the_screening_form_asks_in_chinese_on_a_chinese_page(
    protocol, chinese_site, coordinator_a
):
    from tests.factories import ParticipantFactory

    participant = ParticipantFactory(site=chinese_site, user=coordinator_a, sex="F")
    page = logged_in(coordinator_a).get(f"/participants/{participant.study_number}/screen/")
    assert "E5 · 妊娠或哺乳期" in page.text
    assert "Pregnant or lactating" not in page.text
