"""The concealed lists: only the trial administrator reaches them, and every look is logged."""

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
