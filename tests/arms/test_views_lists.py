"""The concealed lists: only the trial administrator reaches them, and every look is logged."""

import random
import re
import uuid

import pytest
from django.urls import reverse

from arms import rules, selectors, services
from arms.models import ListAccessLog, ListEntry, RandomizationList

pytestmark = pytest.mark.django_db

ROLES = ["coordinator_a", "investigator_a", "coordinator_b", "data_manager", "monitor"]


def list_urls(randomization_list, participant_study_number):
    pk = randomization_list.pk
    return {
        "get": [
            reverse("arms:list_index"),
            reverse("arms:list_generate"),
            reverse("arms:list_upload"),
            reverse("arms:list_detail", args=[pk]),
            reverse("arms:list_entries", args=[pk]),
            reverse("arms:list_export", args=[pk]),
            reverse("arms:balance"),
            reverse("arms:allocation_mark_in_error", args=[participant_study_number]),
        ],
        "post": [
            reverse("arms:list_generate"),
            reverse("arms:list_upload"),
            reverse("arms:list_activate", args=[pk]),
            reverse("arms:allocation_mark_in_error", args=[participant_study_number]),
        ],
    }


@pytest.mark.parametrize("role", ROLES)
def test_no_role_but_the_administrator_reaches_a_list_or_an_entry(
    cast, ready_a, active_list, client_for, role
):
    services.participant_randomize(
        participant=ready_a, user=cast["coordinator_a"], idempotency_key=uuid.uuid4()
    )
    draft = services.randomization_list_generate(user=cast["administrator"], per_stratum=10)
    client = client_for(cast[role])
    for randomization_list in (active_list, draft):
        urls = list_urls(randomization_list, ready_a.study_number)
        for url in urls["get"]:
            assert client.get(url).status_code == 403, url
        for url in urls["post"]:
            assert client.post(url, {"per_stratum": 5, "reason": "x"}).status_code == 403, url
    assert not ListAccessLog.objects.exists()
    assert RandomizationList.objects.count() == 2
    draft.refresh_from_db()
    assert draft.status == "draft"


@pytest.mark.parametrize("role", ROLES)
def test_no_other_page_shows_an_unused_entry(cast, ready_a, active_list, client_for, role):
    """The roster, the allocation and the randomize page show the used entry's arm only."""
    allocation = services.participant_randomize(
        participant=ready_a, user=cast["coordinator_a"], idempotency_key=uuid.uuid4()
    )
    unused = ListEntry.objects.filter(stratum=allocation.stratum, allocation__isnull=True).order_by(
        "sequence"
    )
    client = client_for(cast[role])
    pages = [
        reverse("arms:roster"),
        reverse("arms:roster_csv"),
        reverse("arms:allocation_detail", args=[ready_a.study_number]),
    ]
    for url in pages:
        body = client.get(url).content.decode()
        for entry in unused[:5]:
            assert f"{allocation.stratum.code}-{entry.sequence:04d}" not in body, url
        assert "block_size" not in body, url


def test_the_administrator_sees_the_report_and_each_look_is_logged(
    active_list, administrator, client_for
):
    client = client_for(administrator)
    assert client.get(reverse("arms:list_detail", args=[active_list.pk])).status_code == 200
    assert client.get(reverse("arms:list_entries", args=[active_list.pk])).status_code == 200
    export = client.get(reverse("arms:list_export", args=[active_list.pk]))
    assert export.status_code == 200
    assert export.content.decode() == rules.canonical_text(selectors.list_entries(active_list))
    assert list(
        ListAccessLog.objects.filter(randomization_list=active_list)
        .order_by("at", "pk")
        .values_list("user__username", "action")
    ) == [("adam", "report"), ("adam", "view"), ("adam", "export")]


def test_a_look_behind_the_tls_proxy_logs_the_clients_address_not_the_proxys(
    active_list, administrator, client_for, settings
):
    settings.TRUSTED_PROXY_COUNT = 1
    client_for(administrator).get(
        reverse("arms:list_detail", args=[active_list.pk]),
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="203.0.113.7",
    )
    assert ListAccessLog.objects.get(randomization_list=active_list).address == "203.0.113.7"


def test_the_report_shows_each_stratum_and_the_fingerprint_once_locked(
    ready_a, active_list, coordinator_a, administrator, client_for
):
    client = client_for(administrator)
    page = client.get(reverse("arms:list_detail", args=[active_list.pk])).content.decode()
    assert "Not locked yet" in page
    for code in ("SHE-severe", "SHE-critical", "WUH-severe", "WUH-critical"):
        assert code in page
    services.participant_randomize(
        participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    active_list.refresh_from_db()
    page = client.get(reverse("arms:list_detail", args=[active_list.pk])).content.decode()
    assert active_list.sha256 in page
    assert "The list has not been altered since it was locked." in page


def test_generate_then_activate_through_the_pages(protocol, site_a, administrator, client_for):
    client = client_for(administrator)
    response = client.post(reverse("arms:list_generate"), {"per_stratum": 12, "note": "first"})
    randomization_list = RandomizationList.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("arms:list_detail", args=[randomization_list.pk])
    client.post(reverse("arms:list_activate", args=[randomization_list.pk]))
    randomization_list.refresh_from_db()
    assert randomization_list.status == "active"


def generate_box(client) -> tuple[str, dict]:
    """The Generate box of the lists page, as a browser reads it: where it posts, and its
    hidden key."""
    page = client.get(reverse("arms:list_index")).content.decode()
    form = re.search(r"<form[^>]*data-submit-once[^>]*>.*?</form>", page, re.S).group(0)
    action = re.search(r'action="([^"]*)"', form).group(1)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', form).group(1)
    return action, {"idempotency_key": key}


def test_the_generate_box_of_the_lists_page_stores_one_draft_and_lands_on_it(
    protocol, site_a, site_b, administrator, client_for
):
    client = client_for(administrator)
    action, hidden = generate_box(client)
    response = client.post(action, {**hidden, "per_stratum": 12, "note": "first"}, follow=True)
    randomization_list = RandomizationList.objects.get()
    assert response.redirect_chain == [
        (reverse("arms:list_detail", args=[randomization_list.pk]), 302)
    ]
    assert (randomization_list.status, randomization_list.note) == ("draft", "first")
    assert str(randomization_list.idempotency_key) == hidden["idempotency_key"]
    reports = response.context["reports"]
    assert [r.stratum for r in reports] == [
        "SHE-severe",
        "SHE-critical",
        "WUH-severe",
        "WUH-critical",
    ]
    assert all(12 <= r.entries <= 17 and r.ok for r in reports)
    entries = sum(r.entries for r in reports)
    assert [str(m) for m in response.context["messages"]] == [
        f"Draft list {randomization_list.pk} generated: {entries} entries in 4 strata. "
        "Check its report before use."
    ]


def test_a_second_post_with_the_same_key_stores_nothing_and_goes_to_the_first_list(
    protocol, site_a, site_b, administrator, client_for
):
    client = client_for(administrator)
    action, hidden = generate_box(client)
    first = client.post(action, {**hidden, "per_stratum": 12}, follow=True)
    randomization_list = RandomizationList.objects.get()
    entries = ListEntry.objects.count()
    second = client.post(action, {**hidden, "per_stratum": 12}, follow=True)
    assert RandomizationList.objects.get() == randomization_list
    assert ListEntry.objects.count() == entries
    detail = reverse("arms:list_detail", args=[randomization_list.pk])
    assert first.redirect_chain == [(detail, 302)]
    assert second.redirect_chain == [(detail, 302)]
    assert [str(m) for m in second.context["messages"]] == [
        f"This request was already received: it stored list {randomization_list.pk}, nothing more."
    ]
    # A fresh page is a fresh request.
    _action, fresh = generate_box(client)
    assert fresh != hidden
    client.post(action, {**fresh, "per_stratum": 12})
    assert RandomizationList.objects.count() == 2


def test_a_refused_generation_keeps_the_input_beside_the_field(
    protocol, site_a, administrator, client_for
):
    client = client_for(administrator)
    action, hidden = generate_box(client)
    response = client.post(action, {**hidden, "per_stratum": 10_001, "note": "too long"})
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors == {"per_stratum": ["Ensure this value is less than or equal to 10000."]}
    assert (form["note"].value(), form["idempotency_key"].value()) == (
        "too long",
        hidden["idempotency_key"],
    )
    assert not RandomizationList.objects.exists()


def test_an_upload_sent_twice_stores_one_list(protocol, site_a, administrator, client_for):
    from django.core.files.uploadedfile import SimpleUploadedFile

    text = rules.canonical_text(
        rules.generate(
            strata=selectors.protocol_strata(protocol),
            ratios=selectors.protocol_ratios(protocol),
            block_sizes=protocol.block_sizes,
            per_stratum=6,
            rng=random.Random(4),  # noqa: S311
        )
    ).encode()
    client = client_for(administrator)
    key = str(uuid.uuid4())
    for _ in range(2):
        response = client.post(
            reverse("arms:list_upload"),
            {"file": SimpleUploadedFile("list.csv", text), "idempotency_key": key},
        )
    randomization_list = RandomizationList.objects.get()
    assert randomization_list.source == "uploaded"
    assert response["Location"] == reverse("arms:list_detail", args=[randomization_list.pk])


def test_the_audit_trail_shows_a_10000_entry_list_as_one_event(
    protocol, site_a, site_b, administrator, client_for
):
    client = client_for(administrator)
    before = len(client.get(reverse("audit_log")).context["entries"])
    client.post(reverse("arms:list_generate"), {"per_stratum": 2_500})
    randomization_list = RandomizationList.objects.get()
    assert ListEntry.objects.count() >= 10_000
    entries = client.get(reverse("audit_log")).context["entries"]
    # The list's event, and one per stratum (site x severity), whatever the list's length.
    assert len(entries) == before + 1 + 4
    assert [e.model for e in entries].count("list entry") == 0
    (event,) = [e for e in entries if e.model == "randomization list"]
    count = ListEntry.objects.count()
    assert (event.who, event.action, event.reason) == (
        "adam",
        "Created",
        f"Generated: {count} entries in 4 strata, "
        f"SHA-256 {randomization_list.written_sha256[:12]}…",
    )
    assert randomization_list.written_sha256 == rules.list_sha256(
        selectors.list_entries(randomization_list)
    )
    # The entries themselves are one link away, a page at a time.
    detail = client.get(reverse("arms:list_detail", args=[randomization_list.pk]))
    assert reverse("arms:list_entries", args=[randomization_list.pk]) in detail.content.decode()
    assert randomization_list.written_sha256 in detail.content.decode()
    page = client.get(reverse("arms:list_entries", args=[randomization_list.pk]))
    assert len(page.context["page"]) == 500
    assert page.context["page"].paginator.count == count


def test_generation_takes_a_bounded_number_of_queries(
    protocol, site_a, site_b, administrator, django_assert_max_num_queries
):
    # 10,000 entries: 51 INSERTs on SQLite (199 rows each, its limit of 999 parameters), 10
    # on PostgreSQL; 48 for the list, its four strata and their audit events (checks
    # included), whatever the list's length. One history row per entry was 100 more.
    with django_assert_max_num_queries(100):
        services.randomization_list_generate(
            user=administrator, per_stratum=2_500, idempotency_key=uuid.uuid4()
        )
    assert ListEntry.objects.count() >= 10_000


def test_a_bad_upload_shows_the_line_errors_on_the_file_field(
    protocol, site_a, administrator, client_for
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    text = b"stratum,sequence,arm,block,block_size\nSHE-severe,1,XYZ,1,3\n"
    response = client_for(administrator).post(
        reverse("arms:list_upload"),
        {"file": SimpleUploadedFile("list.csv", text, content_type="text/csv")},
    )
    assert response.status_code == 200
    assert response.context["form"].errors["file"] == [
        "Line 2: unknown arm 'XYZ'.",
        "Stratum SHE-critical has no entries.",
    ]
    assert not RandomizationList.objects.exists()


def test_the_balance_report_counts_per_stratum_and_site(
    ready_a, active_list, coordinator_a, administrator, client_for
):
    allocation = services.participant_randomize(
        participant=ready_a, user=coordinator_a, idempotency_key=uuid.uuid4()
    )
    response = client_for(administrator).get(reverse("arms:balance"))
    report = response.context["report"]
    assert [(r.label, r.total) for r in report.by_stratum] == [("SHE-severe", 1)]
    assert [(r.label, r.total) for r in report.by_site] == [("SHE", 1)]
    assert report.overall.allocated[allocation.arm.code] == 1
    assert report.largest.imbalance == pytest.approx(2 / 3)


def test_the_lists_are_not_in_the_django_admin_even_for_a_superuser(
    active_list, administrator, client_for
):
    administrator.is_staff = administrator.is_superuser = True
    administrator.save()
    client = client_for(administrator)
    for model in ("randomizationlist", "listentry", "stratum"):
        assert client.get(f"/admin/arms/{model}/").status_code == 404, model
    assert client.get("/admin/arms/allocation/").status_code == 200
