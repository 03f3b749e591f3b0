"""A data manager's journey in the browser: the de-identified bundle started from the export
page, written by a real Celery worker while the page shows how far it got, downloaded (the
ZIP opens and holds the manifest); then the CONSORT diagram (its screenshot kept) and the
record-status grid."""

import json
import zipfile

import pytest
from django.urls import reverse

from tests.conftest import log_in, screenshot
from tests.factories import active_randomization_list, bulk_allocated
from tests.trialsite.export_helpers import identifiers, seed_trial
from trialsite.exports.datasets import DATASETS
from trialsite.models import DataExport, ExportStatus

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker_for_this_run(request):
    from django.conf import settings

    if settings.REDIS_URL:
        request.getfixturevalue("redis_broker")


@pytest.fixture
def shared_export_root(child_env, settings, tmp_path):
    """The worker writes where the live server reads: set before the worker starts."""
    settings.EXPORT_ROOT = tmp_path / "exports"
    child_env["EXPORT_ROOT"] = str(settings.EXPORT_ROOT)


def test_a_data_manager_downloads_the_bundle_then_reads_the_oversight_pages(
    broker_for_this_run, shared_export_root, celery_worker_process, page, protocol, site_a,
    site_b, cast, tmp_path,
):  # fmt: skip
    seed_trial(site=site_a, cast=cast)
    randomization_list = active_randomization_list(administrator=cast["administrator"])
    bulk_allocated(site=site_a, user=cast["coordinator_a"], randomization_list=randomization_list,
                   count=6)  # fmt: skip
    log_in(page, cast["data_manager"])

    page.goto(reverse("exports:bundle"))
    page.get_by_role("button", name="Start the export").click()
    status = page.get_by_test_id("export-status")
    assert status.get_attribute("data-status") in ("queued", "running", "done")
    # The page reads itself again every few seconds until the worker has written the ZIP.
    link = page.get_by_test_id("export-download")
    link.wait_for(timeout=120_000)
    screenshot(page, "export-ready")
    export = DataExport.objects.get()
    assert export.status == ExportStatus.DONE, (tmp_path / "worker.log").read_text()[-3000:]

    with page.expect_download() as download:
        link.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as bundle:
        names = {name.split("/", 1)[1]: name for name in bundle.namelist()}
        manifest = json.loads(bundle.read(names["manifest.json"]))
        everything = b"".join(bundle.read(name) for name in names.values())
    assert set(names) == {f"{n}.csv" for n in DATASETS} | {"dictionary.csv", "manifest.json"}
    assert manifest["identified"] is False and manifest["exported_by"] == "dana"
    assert {f["name"]: f["sha256"] for f in manifest["files"]} == export.file_hashes
    for identifier in identifiers():
        assert identifier.encode() not in everything, identifier
    assert export.downloads.get().downloaded_by == cast["data_manager"]

    page.goto(reverse("oversight:consort"))
    assert (
        page.get_by_test_id("consort-assessed").inner_text().startswith("Assessed for eligibility")
    )
    screenshot(page, "export-journey-consort")

    page.goto(reverse("oversight:record_status"))
    assert page.get_by_role("heading", level=1).is_visible()
    screenshot(page, "export-journey-record-status")
