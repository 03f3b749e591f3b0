"""The export page: for data managers and the trial administrator; identifiers for the
administrator only, with a reason, and every export recorded."""

import json

import pytest
from django.urls import reverse

from tests.trialsite.export_helpers import OLDEST_MRN, csv_rows, identifiers, read_zip, seed_trial
from trialsite.exports.bundle import bundle_build
from trialsite.exports.datasets import DATASETS
from trialsite.models import DataExport

pytestmark = pytest.mark.django_db

URL = reverse("exports:bundle")
DEFAULT = {"datasets": list(DATASETS), "date_mode": "as_recorded"}


@pytest.fixture
def seeded(protocol, site_a, site_b, cast):
    return seed_trial(site=site_a, cast=cast)


@pytest.fixture(autouse=True)
def _export_root(settings, tmp_path):
    settings.EXPORT_ROOT = tmp_path / "exports"


def download(client, response) -> dict[str, bytes]:
    """Follows a started export: the worker's service run here (the task, with a real
    worker, is in test_export_tasks.py), then the export's page and its file."""
    assert response.status_code == 302, response.content[:500]
    export = DataExport.objects.get(pk=int(response["Location"].rstrip("/").split("/")[-1]))
    assert response["Location"] == reverse("exports:detail", args=[export.pk])
    assert bundle_build(export_id=export.pk)
    page = client.get(response["Location"])
    link = reverse("exports:download", args=[export.pk])
    assert link.encode() in page.content
    response = client.get(link)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="trialsite-export-')
    return read_zip(b"".join(response.streaming_content))


@pytest.mark.parametrize(
    "role,status",
    [
        ("coordinator_a", 403),
        ("investigator_a", 403),
        ("coordinator_b", 403),
        ("monitor", 403),
        ("data_manager", 200),
        ("administrator", 200),
    ],
)
def test_the_page_is_for_data_managers_and_the_administrator(seeded, cast, client_for, role,
                                                             status):  # fmt: skip
    client = client_for(cast[role])
    assert client.get(URL).status_code == status
    response = client.post(URL, DEFAULT)
    assert response.status_code == (302 if status == 200 else status)
    assert DataExport.objects.count() == (1 if status == 200 else 0)


def test_a_data_manager_downloads_the_de_identified_bundle(seeded, cast, client_for):
    client = client_for(cast["data_manager"])
    page = client.get(URL)
    assert b"identified" in page.content and b'name="identified"' not in page.content
    files = download(client, client.post(URL, DEFAULT))
    assert set(files) == {f"{n}.csv" for n in DATASETS} | {"dictionary.csv", "manifest.json"}
    everything = b"".join(files.values())
    for identifier in identifiers():
        assert identifier.encode() not in everything, identifier
    record = DataExport.objects.get()
    assert (record.exported_by, record.source, record.identified) == (
        cast["data_manager"],
        "page",
        False,
    )


def test_an_identified_export_is_refused_to_a_data_manager(seeded, cast, client_for):
    response = client_for(cast["data_manager"]).post(
        URL, {**DEFAULT, "identified": "on", "reason": "curious"}
    )
    assert response.status_code == 403
    assert not DataExport.objects.exists()


def test_the_administrators_identified_export_needs_a_reason(seeded, cast, client_for):
    client = client_for(cast["administrator"])
    response = client.post(URL, {**DEFAULT, "identified": "on", "reason": "  ", "labels": "on"})
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors == {"reason": ["Say why identifiers are needed in this export."]}
    assert form["labels"].value() is True  # what was chosen stays
    assert not DataExport.objects.exists()


def test_the_administrators_identified_export_is_recorded_with_its_reason(seeded, cast, client_for):
    client = client_for(cast["administrator"])
    files = download(
        client,
        client.post(
            URL, {**DEFAULT, "datasets": ["participants"], "identified": "on", "reason": "SAE"}
        ),
    )
    assert set(files) == {"participants.csv", "dictionary.csv", "manifest.json"}
    assert OLDEST_MRN in {r["mrn"] for r in csv_rows(files["participants.csv"])}
    record = DataExport.objects.get()
    assert (record.identified, record.reason, record.datasets) == (True, "SAE", ["participants"])
    # Asked for by the administrator; then begun and written by the worker, each step a
    # history row with its reason.
    history = list(record.history.order_by("history_id"))
    assert [(h.status, h.history_user, h.history_change_reason) for h in history] == [
        ("queued", cast["administrator"], ""),
        ("running", None, "The worker began writing the bundle."),
        ("done", None, "The worker wrote the bundle."),
    ]


def test_no_dataset_chosen_is_said_beside_the_field(seeded, cast, client_for):
    response = client_for(cast["data_manager"]).post(URL, {"date_mode": "shifted"})
    assert response.context["form"].errors == {"datasets": ["Choose at least one dataset."]}
    assert not DataExport.objects.exists()


@pytest.mark.parametrize("role", ["data_manager", "administrator"])
def test_the_home_page_links_the_export(seeded, cast, client_for, role):
    response = client_for(cast[role]).get(reverse("role_home", args=[role]))
    assert URL.encode() in response.content


def test_ticked_sites_narrow_the_export(seeded, cast, client_for, site_b):
    from tests.factories import ParticipantFactory

    other = ParticipantFactory(site=site_b, user=cast["coordinator_b"])
    client = client_for(cast["data_manager"])
    files = download(client, client.post(URL, {**DEFAULT, "sites": [site_b.pk]}))
    numbers = {r["study_number"] for r in csv_rows(files["participants.csv"])}
    assert numbers == {other.study_number}
    assert all(r["study_number"] in ("", other.study_number)
               for r in csv_rows(files["audit_trail.csv"]))  # fmt: skip
    manifest = json.loads(files["manifest.json"])
    assert manifest["filters"]["sites"] == ["WUH"]
    everything = files["participants.csv"] + files["screening_log.csv"]
    assert seeded.participant.study_number.encode() not in everything


def test_the_page_lists_the_recent_exports(seeded, cast, client_for):
    client = client_for(cast["administrator"])
    download(client, client.post(URL, {**DEFAULT, "identified": "on", "reason": "SAE follow-up"}))
    page = client.get(URL)
    (export,) = page.context["recent_exports"]
    assert export.exported_by == cast["administrator"]
    assert b"SAE follow-up" in page.content and export.exported_at_utc.encode() in page.content
