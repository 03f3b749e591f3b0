"""The oversight pages: the CONSORT flow diagram (HTML and SVG) and the record-status grid."""

import base64
import re
import xml.etree.ElementTree as ET  # our own server's output, parsed to check it is well formed
from datetime import datetime, time, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from arms.models import Allocation, Arm
from dosing.services import dose_record
from enrollment.models import ConsentRefusal, Decision, Participant, Screening, Withdrawal
from outcomes.models import EndOfStudy
from tests.conftest import OUTPUT_DIR, log_in, screenshot
from tests.dosing.conftest import randomize
from tests.factories import ParticipantFactory, active_randomization_list, bulk_allocated
from tests.trialsite.export_helpers import seed_trial
from trialsite.core.audit import audited_save
from trialsite.core.clock import site_today
from trialsite.oversight import rules, selectors

CONSORT = reverse("oversight:consort")
SVG = reverse("oversight:consort_svg")
GRID = reverse("oversight:record_status")


def _screen(participant, user, decision, failures=None):
    return audited_save(
        Screening(
            participant=participant,
            protocol=Arm.objects.get(code="MSC").protocol,
            screened_by=user,
            screening_date=site_today(participant.site),
            answers={"severity": "severe", "weight_kg": "70"},
            decision=decision,
            results=[
                {"code": code, "outcome": "not_met", "reason": why}
                for code, why in (failures or {"I2": "met"}).items()
            ],
            failures=failures or {},
        ),
        user=user,
    )


def _not_randomized(site, user):
    """One participant for each way out before randomization, and one never screened."""
    ParticipantFactory(site=site, user=user)  # registered only: not assessed
    for failures in ({"I1": "age 17"}, {"I3": "BMI 41", "E2": "pregnant"}, {"E2": "pregnant"}):
        _screen(ParticipantFactory(site=site, user=user), user, Decision.INELIGIBLE, failures)
    declined = ParticipantFactory(site=site, user=user)
    _screen(declined, user, Decision.ELIGIBLE)
    audited_save(
        ConsentRefusal(
            participant=declined,
            refused_on=site_today(site),
            reason="Does not want an infusion",
            recorded_by=user,
        ),
        user=user,
    )
    withdrew = ParticipantFactory(site=site, user=user)
    _screen(withdrew, user, Decision.ELIGIBLE)
    audited_save(
        Withdrawal(
            participant=withdrew,
            scope="follow_up",
            withdrawn_on=site_today(site),
            reason="Moved away",
            recorded_by=user,
        ),
        user=user,
    )
    _screen(ParticipantFactory(site=site, user=user), user, Decision.INCOMPLETE)


def _end(allocation, reason, user):
    audited_save(
        EndOfStudy(
            participant=allocation.participant,
            reason=reason,
            ended_on=site_today(allocation.participant.site),
            recorded_by=user,
        ),
        user=user,
    )


@pytest.fixture
def trial(protocol, site_a, site_b, cast):
    """A varied trial at site A (every exclusion reason, every end of study, a dose given) and
    a little at site B."""
    coordinator, coordinator_b = cast["coordinator_a"], cast["coordinator_b"]
    seed_trial(site=site_a, cast=cast)  # one randomized by the service, one ineligible (age)
    _not_randomized(site_a, coordinator)
    _screen(
        ParticipantFactory(site=site_b, user=coordinator_b),
        coordinator_b,
        Decision.INELIGIBLE,
        {"I1": "age"},
    )
    randomization_list = active_randomization_list(administrator=cast["administrator"], seed=11)
    allocated = bulk_allocated(
        site=site_a, user=coordinator, randomization_list=randomization_list, count=12
    )
    for allocation, reason in zip(
        allocated[:6],
        ["completed", "died", "lost", "withdrew", "investigator", "completed"],
        strict=True,
    ):
        _end(allocation, reason, coordinator)
    audited_save(
        Withdrawal(
            participant=allocated[6].participant,
            scope="data",
            withdrawn_on=site_today(site_a),
            reason="Asked",
            recorded_by=coordinator,
        ),
        user=coordinator,
    )
    # An MSC participant with the day-1 infusion given.
    msc = next(a for a in allocated[7:] if a.arm.code == "MSC")
    zone = site_a.zone
    _screen(msc.participant, coordinator, Decision.ELIGIBLE)
    day1, _day4 = randomize(
        msc.participant,
        "MSC",
        at=datetime.combine(site_today(site_a) - timedelta(days=4), time(10, 0), tzinfo=zone),
        user=coordinator,
    )
    dose_record(
        dose=day1,
        user=coordinator,
        outcome="given",
        given_at=day1.due_at + timedelta(minutes=20),
        amount=day1.planned_amount,
        lot_number="UCMSC-2603-A",
    )
    bulk_allocated(site=site_b, user=coordinator_b, randomization_list=randomization_list, count=2)
    return {"allocated": allocated, "msc": msc}


def assert_adds_up(consort):
    assert consort.assessed == (
        consort.excluded + consort.declined + consort.other + consort.pending + consort.randomized
    )
    assert consort.randomized == sum(arm.allocated for arm in consort.arms)
    for arm in consort.arms:
        assert arm.allocated == arm.analysed_total + arm.lost + arm.discontinued_total + arm.ongoing
        assert arm.allocated == arm.received + arm.not_received_total


def test_consort_numbers_add_up_with_every_exclusion_reason(trial, data_manager):
    consort = selectors.consort(data_manager)
    assert_adds_up(consort)
    # Site A: 1 + 12 randomized; 4 ineligible (3 + the oldest); 1 declined, withdrew, incomplete.
    # Site B: 2 randomized, 1 ineligible.
    assert (consort.randomized, consort.excluded, consort.declined, consort.other) == (15, 5, 1, 1)
    assert consort.pending == 1
    assert consort.assessed == 23
    assert consort.excluded_by_reason["E2"] == 2
    assert consort.excluded_by_reason["I3"] == 1
    arms = {arm.code: arm for arm in consort.arms}
    assert sum(arm.lost for arm in arms.values()) == 1
    assert sum(arm.discontinued_total for arm in arms.values()) == 3  # withdrew, investigator, data
    assert sum(arm.analysed["completed"] for arm in arms.values()) == 2
    assert sum(arm.analysed["died"] for arm in arms.values()) == 1
    # Standard care has no study intervention: everyone in it counts as having received it.
    assert arms["STD"].received == arms["STD"].allocated
    assert arms["MSC"].received == 1


def test_an_investigator_sees_only_their_sites_counts(trial, investigator_a, data_manager, site_a):
    mine = selectors.consort(investigator_a)
    assert_adds_up(mine)
    assert mine == selectors.consort(data_manager, site_ids={site_a.pk})
    assert (mine.assessed, mine.randomized, mine.excluded) == (20, 13, 4)


def test_the_page_shows_the_counts_each_linked_to_its_list(trial, client_for, data_manager):
    response = client_for(data_manager).get(CONSORT)
    assert response.status_code == 200
    html = response.content.decode()
    consort = response.context["consort"]
    log = reverse("enrollment:screening_log")
    assert f'href="{log}" data-count="assessed">{consort.assessed}</a>' in html
    assert f'href="{log}?decision=ineligible&amp;reason=E2" data-count="reason-E2">2</a>' in html
    assert f'href="{reverse("arms:roster")}" data-count="randomized">15</a>' in html
    for arm in consort.arms:
        roster = reverse("arms:roster_arm", args=[arm.code])
        assert f'href="{roster}" data-count="allocated-{arm.code}">{arm.allocated}</a>' in html
    assert "completing day 28 or by death" in html  # the definition of analysed is on the page


def test_the_svg_is_well_formed_and_holds_the_same_numbers(trial, client_for, data_manager):
    response = client_for(data_manager).get(SVG)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/svg+xml")
    assert response["Content-Disposition"] == 'attachment; filename="consort.svg"'
    root = ET.fromstring(response.content)  # noqa: S314 (our own output)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    consort = selectors.consort(data_manager)
    assert "Assessed for eligibility (n=23)" in texts
    assert "Randomized (n=15)" in texts
    assert f"Not eligible (n={consort.excluded})" in texts
    assert "  failed E2 (n=2)" in texts
    for arm in consort.arms:
        assert f"Allocated to {arm.name} (n={arm.allocated})" in texts
        assert f"Analysed (n={arm.analysed_total})" in texts or arm.analysed_total == 0


def test_the_svg_escapes_text(trial, client_for, data_manager):
    arm = Arm.objects.get(code="PAX")
    arm.name = "Pax <b>&</b>"
    audited_save(arm, reason="test: markup in an arm's name")
    response = client_for(data_manager).get(SVG)
    root = ET.fromstring(response.content)  # noqa: S314 (our own output): still well formed
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert any(text.startswith("Allocated to Pax <b>&</b> (n=") for text in texts)


def test_counts_ignore_participants_never_screened_nor_randomized():
    flows = [
        rules.ParticipantFlow(False, None, (), False, False, False, False, None, False, 0, 0, None)
    ]
    assert rules.tally(flows, [], arms_with_intervention=set()).assessed == 0


def test_a_participant_not_dosed_has_a_reason():
    base = dict(
        screened=True, decision="eligible", failures=(), refused=False, withdrawn=False,
        off_study_withdrawal=False, treatment_withdrawal=False, arm="MSC",
        arm_has_intervention=True, doses_given=0, doses_not_given=0, end_reason=None,
    )  # fmt: skip
    assert rules.not_received_reason(rules.ParticipantFlow(**base)) == "pending"
    ended = {**base, "end_reason": "died"}
    assert rules.not_received_reason(rules.ParticipantFlow(**ended)) == "ended"
    stopped = {**base, "treatment_withdrawal": True}
    assert rules.not_received_reason(rules.ParticipantFlow(**stopped)) == "withdrew"
    refused = {**base, "doses_not_given": 1}
    assert rules.not_received_reason(rules.ParticipantFlow(**refused)) == "not_given"
    dosed = {**base, "doses_given": 1}
    assert rules.not_received_reason(rules.ParticipantFlow(**dosed)) is None


# --- Record-status grid ---------------------------------------------------------------------


def test_the_grid_shows_each_step_with_a_label_and_a_link(trial, client_for, data_manager):
    response = client_for(data_manager).get(GRID)
    assert response.status_code == 200
    html = response.content.decode()
    msc = trial["msc"].participant.study_number
    row = re.search(rf'<tr data-participant="{msc}">(.*?)</tr>', html, re.S).group(1)
    timeline = reverse("dosing:participant_timeline", args=[msc])
    assert re.search(
        rf'class="badge text-bg-info[^"]*" href="{timeline}" data-step="doses"'
        r' data-status="partial">1/2<',
        row,
    )
    assert f'href="{reverse("arms:allocation_detail", args=[msc])}"' in row
    assert 'data-step="allocation" data-status="done">MSC<' in row
    for participant in Participant.objects.all():
        assert participant.name not in html
        assert participant.mrn not in html


def test_the_grid_is_scoped_to_the_users_sites(trial, client_for, coordinator_b, site_b):
    page = client_for(coordinator_b).get(GRID).context["page"]
    assert {p.site_id for p in page.object_list} == {site_b.pk}
    assert page.paginator.count == 3


def _grid_queries(client, count, *, site, user, randomization_list):
    bulk_allocated(site=site, user=user, randomization_list=randomization_list, count=count)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(GRID)
    assert response.status_code == 200
    return len(queries)


def test_the_grid_reads_as_many_queries_for_5_participants_as_for_60(
    protocol, site_a, coordinator_a, administrator, client_for, data_manager
):
    randomization_list = active_randomization_list(administrator=administrator, per_stratum=80)
    client = client_for(data_manager)
    args = {"site": site_a, "user": coordinator_a, "randomization_list": randomization_list}
    few = _grid_queries(client, 5, **args)
    many = _grid_queries(client, 55, **args)
    assert Allocation.objects.count() == 60
    assert few == many


# --- The browser -----------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_consort_page_at_1366_px(page, protocol, site_a, site_b, cast):
    seed_trial(site=site_a, cast=cast)
    _not_randomized(site_a, cast["coordinator_a"])
    randomization_list = active_randomization_list(administrator=cast["administrator"])
    bulk_allocated(
        site=site_a, user=cast["coordinator_a"], randomization_list=randomization_list, count=9
    )
    log_in(page, cast["data_manager"])
    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto(CONSORT)
    assert (
        page.get_by_test_id("consort-assessed").inner_text().startswith("Assessed for eligibility")
    )
    screenshot(page, "consort-1366")
    with page.expect_download() as download:
        page.get_by_test_id("consort-svg").click()
    assert download.value.suggested_filename == "consort.svg"
    # The file as a reader opens it, kept beside the page's screenshot.
    saved = OUTPUT_DIR / "consort.svg"
    download.value.save_as(saved)
    drawing = base64.b64encode(saved.read_bytes()).decode()
    page.goto("about:blank")
    page.set_content(f'<img alt="CONSORT" src="data:image/svg+xml;base64,{drawing}">')
    screenshot(page, "consort-svg")


@pytest.mark.parametrize(
    ("role", "home"),
    [
        ("coordinator_a", "coordinator"),
        ("investigator_a", "investigator"),
        ("data_manager", "data_manager"),
        ("monitor", "monitor"),
        ("administrator", "administrator"),
    ],
)
def test_each_roles_home_page_links_to_both_pages(protocol, cast, client_for, role, home):
    html = client_for(cast[role]).get(reverse("role_home", args=[home])).content.decode()
    assert f'href="{CONSORT}"' in html
    assert f'href="{GRID}"' in html


def test_a_user_without_a_role_may_not_open_them(protocol, client_for):
    from tests.factories import UserFactory

    client = client_for(UserFactory())
    assert [client.get(url).status_code for url in (CONSORT, SVG, GRID)] == [403, 403, 403]


# --- A trial of 300: every exclusion reason, every way a randomized participant ends ---------


@pytest.mark.django_db
def test_consort_of_300_participants_with_every_exclusion_reason_adds_up(
    protocol, site_a, site_b, cast, data_manager
):
    from enrollment.models import EligibilityCriterion
    from outcomes.models import EndReason

    coordinator = cast["coordinator_a"]
    codes = list(
        EligibilityCriterion.objects.filter(protocol__is_current=True)
        .order_by("code")
        .values_list("code", flat=True)
    )
    assert len(codes) >= 16  # I1-I4, E1-E12
    per_reason = 10
    for code in codes:
        for _ in range(per_reason):
            _screen(ParticipantFactory(site=site_a, user=coordinator), coordinator,
                    Decision.INELIGIBLE, {code: "does not hold"})  # fmt: skip
    declined = other = pending = 10
    for _ in range(declined):
        refused = ParticipantFactory(site=site_a, user=coordinator)
        _screen(refused, coordinator, Decision.ELIGIBLE)
        audited_save(
            ConsentRefusal(participant=refused, refused_on=site_today(site_a),
                           reason="Declined", recorded_by=coordinator),
            user=coordinator,
        )  # fmt: skip
    for _ in range(other):
        withdrew = ParticipantFactory(site=site_a, user=coordinator)
        _screen(withdrew, coordinator, Decision.ELIGIBLE)
        audited_save(
            Withdrawal(participant=withdrew, scope="follow_up", withdrawn_on=site_today(site_a),
                       reason="Moved away", recorded_by=coordinator),
            user=coordinator,
        )  # fmt: skip
    for _ in range(pending):
        _screen(ParticipantFactory(site=site_a, user=coordinator), coordinator, Decision.INCOMPLETE)
    not_randomized = len(codes) * per_reason + declined + other + pending
    randomization_list = active_randomization_list(administrator=cast["administrator"],
                                                   per_stratum=150)  # fmt: skip
    allocated = []
    remaining = 300 - not_randomized
    for site, severity, user in (
        (site_a, "severe", coordinator),
        (site_a, "critical", coordinator),
        (site_b, "severe", cast["coordinator_b"]),
    ):
        count = remaining // 3 + (remaining % 3 if severity == "severe" and site == site_b else 0)
        allocated += bulk_allocated(site=site, user=user, randomization_list=randomization_list,
                                    count=count, severity=severity)  # fmt: skip
    reasons = [reason for reason, _label in EndReason.choices]
    for index, allocation in enumerate(allocated[: len(reasons) * 6]):
        _end(allocation, reasons[index % len(reasons)], coordinator)
    assert Participant.objects.count() == 300

    consort = selectors.consort(data_manager)
    assert_adds_up(consort)
    assert consort.assessed == 300
    assert (consort.excluded, consort.declined, consort.other, consort.pending) == (
        len(codes) * per_reason, declined, other, pending,
    )  # fmt: skip
    assert consort.randomized == remaining == len(allocated)
    assert dict(consort.excluded_by_reason) == {code: per_reason for code in codes}
    arms = {arm.code: arm for arm in consort.arms}
    assert sum(arm.allocated for arm in arms.values()) == remaining
    assert sum(arm.lost for arm in arms.values()) == 6
    assert sum(arm.analysed["completed"] for arm in arms.values()) == 6
    assert sum(arm.analysed["died"] for arm in arms.values()) == 6
    assert sum(arm.discontinued_total for arm in arms.values()) == 12  # withdrew, investigator
    assert sum(arm.ongoing for arm in arms.values()) == remaining - 30
