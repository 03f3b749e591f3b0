"""A bundle written by the worker: claimed once, its progress on its row, its ZIP in the
private folder with the hashes of the manifest, downloaded only by who asked for it (each
download audited), deleted when its time is up; and once through a real worker."""

import datetime
import hashlib
import io
import json
import zipfile

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from tests.conftest import wait_for
from tests.factories import user_with_role
from tests.trialsite.export_helpers import identifiers, read_zip, seed_trial
from trialsite.celery import app
from trialsite.core.audit import audited_save
from trialsite.core.models import Role
from trialsite.exports.bundle import bundle_build, export_request, exports_expire
from trialsite.exports.columns import ExportOptions
from trialsite.exports.datasets import DATASETS
from trialsite.models import DataExport, ExportDownload, ExportProgress, ExportStatus

ALL = tuple(DATASETS)


@pytest.fixture
def export_root(settings, tmp_path):
    settings.EXPORT_ROOT = tmp_path / "exports"
    return settings.EXPORT_ROOT


@pytest.fixture
def seeded(protocol, site_a, site_b, cast):
    return seed_trial(site=site_a, cast=cast)


def queued(user, **options) -> DataExport:
    sent = []
    export = export_request(user=user, options=ExportOptions(datasets=ALL, **options),
                            enqueue=sent.append)  # fmt: skip
    assert sent == [export.pk]
    return export


@pytest.mark.django_db
def test_the_worker_writes_the_zip_its_manifest_and_its_progress(seeded, cast, export_root):
    export = queued(cast["data_manager"])
    assert export.status == ExportStatus.QUEUED and export.datasets_total == len(ALL)
    assert bundle_build(export_id=export.pk) is True
    export.refresh_from_db()
    assert export.status == ExportStatus.DONE
    path = export_root / export.file_name
    content = path.read_bytes()
    assert export.file_bytes == len(content)
    assert export.file_sha256 == hashlib.sha256(content).hexdigest()
    files = read_zip(content)
    manifest = json.loads(files["manifest.json"])
    assert manifest["exported_by"] == "dana" and manifest["source"] == "page"
    for entry in manifest["files"]:
        assert hashlib.sha256(files[entry["name"]]).hexdigest() == entry["sha256"]
        assert len(files[entry["name"]]) == entry["bytes"]
        assert export.file_hashes[entry["name"]] == entry["sha256"]
    everything = b"".join(files.values())
    for identifier in identifiers():
        assert identifier.encode() not in everything, identifier
    progress = ExportProgress.objects.get(export=export)
    data_rows = sum(e["rows"] for e in manifest["files"] if e["name"] != "dictionary.csv")
    assert (progress.datasets_done, progress.rows_written) == (len(ALL), data_rows)
    kept = export.expires_at - timezone.now()
    assert datetime.timedelta(days=6, hours=23) < kept <= datetime.timedelta(days=7)


@pytest.mark.django_db
def test_a_second_delivery_of_the_task_writes_nothing(seeded, cast, export_root):
    export = queued(cast["data_manager"])
    assert bundle_build(export_id=export.pk) is True
    assert bundle_build(export_id=export.pk) is False
    assert len(list(export_root.iterdir())) == 1
    assert export.history.count() == 3  # queued, running, done


@pytest.mark.django_db
def test_a_bundle_that_cannot_be_written_is_marked_failed_and_leaves_no_file(
    seeded, cast, export_root, client_for
):
    export = queued(cast["data_manager"])
    # The dataset was asked for under a name a later version no longer has.
    export.options = {**export.options, "datasets": ["participants", "no_such_dataset"]}
    audited_save(export, reason="test: an option the code no longer knows")
    assert bundle_build(export_id=export.pk) is False
    export.refresh_from_db()
    assert (export.status, export.error) == (ExportStatus.FAILED, "KeyError")
    assert not export_root.exists() or not any(export_root.iterdir())
    page = client_for(cast["data_manager"]).get(reverse("exports:detail", args=[export.pk]))
    assert b"could not be written" in page.content
    assert b"data-export-waiting" not in page.content


@pytest.mark.django_db
def test_the_page_waits_then_offers_the_download_to_who_asked_only(seeded, cast, export_root,
                                                                   client_for):  # fmt: skip
    export = queued(cast["data_manager"])
    detail = reverse("exports:detail", args=[export.pk])
    download = reverse("exports:download", args=[export.pk])
    client = client_for(cast["data_manager"])
    waiting = client.get(detail)
    assert b"data-export-waiting" in waiting.content and b"export-progress.js" in waiting.content
    assert client.get(download).status_code == 404  # not written yet
    bundle_build(export_id=export.pk)
    ready = client.get(detail)
    assert b"data-export-waiting" not in ready.content and download.encode() in ready.content
    response = client.get(download)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as bundle:
        assert any(name.endswith("/manifest.json") for name in bundle.namelist())
    (taken,) = ExportDownload.objects.all()
    assert (taken.export, taken.downloaded_by) == (export, cast["data_manager"])
    assert taken.history.get().history_user == cast["data_manager"]
    # Another data manager: not theirs, a 404; the administrator sees every export; the
    # site roles and the monitor: 403.
    other = user_with_role(Role.DATA_MANAGER, username="dora")
    assert client_for(other).get(detail).status_code == 404
    assert client_for(other).get(download).status_code == 404
    assert client_for(cast["administrator"]).get(download).status_code == 200
    for role in ("coordinator_a", "coordinator_b", "investigator_a", "monitor"):
        assert client_for(cast[role]).get(download).status_code == 403
    assert ExportDownload.objects.count() == 2


@pytest.mark.django_db
def test_an_identified_bundle_is_refused_to_anyone_but_the_administrator(seeded, cast,
                                                                         export_root):  # fmt: skip
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        queued(cast["data_manager"], identified=True, reason="curious")
    assert not DataExport.objects.exists()


@pytest.mark.django_db
def test_kept_files_are_deleted_when_their_time_is_up(seeded, cast, export_root, client_for):
    export = queued(cast["data_manager"])
    bundle_build(export_id=export.pk)
    export.refresh_from_db()
    path = export_root / export.file_name
    assert exports_expire(now=export.expires_at - datetime.timedelta(seconds=1)) == 0
    assert path.exists()
    with time_machine.travel(export.expires_at, tick=False):
        assert exports_expire() == 1
        assert exports_expire() == 0
    assert not path.exists()
    export.refresh_from_db()
    assert export.status == ExportStatus.EXPIRED
    assert export.history.latest("history_id").history_change_reason == (
        "Its time was up: the file was deleted."
    )
    client = client_for(cast["data_manager"])
    assert client.get(reverse("exports:download", args=[export.pk])).status_code == 404
    assert (
        b"deleted when its time was up"
        in client.get(reverse("exports:detail", args=[export.pk])).content
    )


def test_the_sweep_runs_every_five_minutes():
    entry = app.conf.beat_schedule["exports-sweep"]
    assert (entry["task"], entry["schedule"]) == ("trialsite.exports.sweep", 300.0)
    assert "trialsite.exports.sweep" in app.tasks and "trialsite.exports.bundle_build" in app.tasks


@pytest.fixture
def broker_for_this_run(request):
    from django.conf import settings

    if settings.REDIS_URL:
        request.getfixturevalue("redis_broker")


@pytest.fixture
def shared_export_root(child_env, settings, tmp_path):
    """The worker writes where this test's pages read: asked for before the worker starts."""
    settings.EXPORT_ROOT = tmp_path / "exports"
    child_env["EXPORT_ROOT"] = str(settings.EXPORT_ROOT)


@pytest.mark.worker
def test_the_page_starts_an_export_that_a_real_worker_writes(
    broker_for_this_run, shared_export_root, celery_worker_process, protocol, site_a, site_b,
    cast, tmp_path, client_for,
):  # fmt: skip
    seed_trial(site=site_a, cast=cast)
    client = client_for(cast["data_manager"])
    response = client.post(
        reverse("exports:bundle"), {"datasets": list(DATASETS), "date_mode": "study_days"}
    )
    assert response.status_code == 302
    export = DataExport.objects.get()
    assert wait_for(lambda: DataExport.objects.get(pk=export.pk).status == ExportStatus.DONE), (
        tmp_path / "worker.log"
    ).read_text()[-3000:]
    download = client.get(reverse("exports:download", args=[export.pk]))
    files = read_zip(b"".join(download.streaming_content))
    assert json.loads(files["manifest.json"])["filters"]["dates"] == "study_days"
    assert ExportProgress.objects.get(export=export).datasets_done == len(DATASETS)
