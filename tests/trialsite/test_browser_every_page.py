"""Every list and form page, as each role opens it, in headless Chromium: nothing scrolls
sideways on a phone (390 px) or a ward tablet (768 px), the worklist's Record button is within a
thumb's reach, and axe-core finds nothing serious against WCAG 2.2 AA on a phone or a desktop."""

import re

import pytest

from enrollment.models import Screening
from tests.conftest import ROOT, log_in, screenshot
from tests.trialsite.ward import ROLE_USERS, build_ward, pages_by_role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE, TABLET, DESKTOP = 390, 768, 1366
AXE = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
# Page structure a screen-reader user moves by: reported by axe as moderate, checked all the same.
STRUCTURE_RULES = {"landmark-one-main", "region", "heading-order", "page-has-heading-one", "bypass"}
SERIOUS = ("serious", "critical")
AXE_RUN = """async (tags) => {
  const options = {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']};
  const result = await axe.run(document, options);
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 3).map(
      n => n.target.join(' ') + ' ' + (n.failureSummary || '').replace(/\\s+/g, ' ')),
  }));
}"""

# The element sticking out furthest to the right, named for the failure message.
WIDEST = """() => {
  let widest = null, right = window.innerWidth;
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect().right;
    if (r > right) { right = r; widest = el; }
  }
  if (!widest) return '';
  const id = widest.id ? '#' + widest.id : '';
  const cls = widest.classList.length ? '.' + [...widest.classList].join('.') : '';
  return `${widest.tagName.toLowerCase()}${id}${cls} ends at ${Math.round(right)}px`;
}"""


@pytest.fixture
def ward(protocol, site_a, site_b, cast):
    return build_ward(site=site_a, cast=cast)


@pytest.fixture
def axe_page(chromium, live_server):
    """A page whose Content-Security-Policy lets the test inject axe-core (an inline script to
    the browser); the site's own pages carry nothing inline either way."""
    context = chromium.new_context(base_url=live_server.url, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def shot_name(width: int, role: str, path: str) -> str:
    return f"width-{width}-{role}-" + (re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-") or "root")


def each_page(page, cast, ward, widths):
    """Log in as each role in turn and open each of its pages at each width: yields
    (role, path, width) with the page loaded."""
    for role, paths in pages_by_role(ward).items():
        page.context.clear_cookies()
        page.set_viewport_size({"width": 1280, "height": 900})
        log_in(page, cast[ROLE_USERS[role]])
        for width in widths:
            page.set_viewport_size({"width": width, "height": 844})
            for path in paths:
                response = page.goto(path)
                assert response.status == 200, f"{role} {path}: {response.status}"
                yield role, path, width


def test_no_page_scrolls_sideways_on_a_phone_or_a_tablet(page, cast, ward):
    too_wide = []
    for role, path, width in each_page(page, cast, ward, (PHONE, TABLET)):
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        inner_width = page.evaluate("window.innerWidth")
        if scroll_width > inner_width:
            too_wide.append(
                f"{role} {path} at {width}px: {scroll_width}px, {page.evaluate(WIDEST)}"
            )
        if width == PHONE:
            screenshot(page, shot_name(width, role, path))
    assert too_wide == [], "\n".join(too_wide)


def test_the_worklist_record_button_is_within_a_thumbs_reach_on_a_phone(page, cast, ward):
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, cast["coordinator_a"])
    page.set_viewport_size({"width": PHONE, "height": 844})
    page.goto("/dosing/today/")
    row = page.get_by_test_id("worklist-row").filter(has_text=ward.dosed)
    button = row.get_by_role("link", name="Record")
    box = button.bounding_box()
    # The whole width of the card and at least 44 px high: a thumb finds it without aiming.
    assert box["width"] >= PHONE * 0.75
    assert box["height"] >= 44
    # The row's study number and status are on the phone's screen with it, not off to the side.
    for key in (row.get_by_role("link", name=ward.dosed), row.get_by_text("Scheduled")):
        key_box = key.bounding_box()
        assert key_box["x"] >= 0
        assert key_box["x"] + key_box["width"] <= PHONE
    screenshot(page, "worklist-phone-record-button")


def axe_violations(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(AXE_RUN, AXE_TAGS)
    return [v for v in found if v["impact"] in SERIOUS or v["id"] in STRUCTURE_RULES]


def test_axe_finds_nothing_serious_on_any_page_on_a_phone_or_a_desktop(axe_page, cast, ward):
    problems = []
    for role, path, width in each_page(axe_page, cast, ward, (PHONE, DESKTOP)):
        for v in axe_violations(axe_page):
            problems.append(
                f"{role} {path} at {width}px: {v['id']} ({v['impact']}) {v['help']}: {v['nodes']}"
            )
    assert problems == [], "\n".join(problems)


def test_the_browser_stops_a_height_of_minus_5_cm_before_the_server_sees_it(page, cast, ward):
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, cast["coordinator_a"])
    page.set_viewport_size({"width": PHONE, "height": 844})
    page.goto(f"/participants/{ward.registered}/screen/")
    height = page.locator("#id_height_cm")
    assert (height.get_attribute("min"), height.get_attribute("max")) == ("100", "250")
    assert page.get_attribute("#id_weight_kg", "min") == "20"
    height.fill("-5")
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.get_by_role("button", name="Save screening").click()
    assert page.evaluate("document.querySelector('#id_height_cm').validity.rangeUnderflow")
    assert page.evaluate("document.activeElement.id") == "id_height_cm"
    assert posts == []
    assert not Screening.objects.filter(participant__study_number=ward.registered).exists()
