"""The bundle: the chosen datasets, the dictionary and a manifest, written dataset by dataset
and row by row straight into their destination (a folder for the command, one ZIP for the
page), hashed as they are written: no dataset is ever held whole in memory, nor read back.

The manifest holds each file's row count and SHA-256, the protocol version, the UTC time, the
options and whether identifiers are in it; the same hashes are kept in the `DataExport` row,
which is itself in the audit trail.

A bundle asked for on the page is built by the worker (`bundle_build`, from the Celery task
in `trialsite/tasks.py`) into a private folder (`EXPORT_ROOT`), its progress kept on its
`DataExport` row for the page to show, and the ZIP kept for download until it expires
(`EXPORT_KEEP_DAYS`; `exports_expire` deletes it and marks the row).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, BinaryIO

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from trialsite.core.access import access_for
from trialsite.core.audit import audited_save
from trialsite.core.clock import utc_iso
from trialsite.core.models import Protocol, Role, Site
from trialsite.models import (
    DataExport,
    ExportDownload,
    ExportProgress,
    ExportSource,
    ExportStatus,
)

from . import copy_sql
from .columns import ExportContext, ExportOptions, header, rows
from .datasets import DATASETS
from .dictionary import DICTIONARY_COLUMNS, dictionary_rows
from .odm import ODM_FILE, odm_write
from .safe_csv import CsvFile, text_cell

logger = logging.getLogger(__name__)

DICTIONARY_FILE = "dictionary.csv"
MANIFEST_FILE = "manifest.json"
HASH_BLOCK = 1024 * 1024
# How often a running export tells its row how far it got (one UPDATE each time).
PROGRESS_EVERY_ROWS = 20_000
# zlib's fastest level: CSV still shrinks about sevenfold, and deflating at the default level
# took more of a large bundle's time than PostgreSQL's COPY of its rows.
ZIP_LEVEL = 1


@dataclass(frozen=True)
class WrittenFile:
    name: str
    rows: int
    sha256: str
    bytes: int


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class HashingWriter(io.RawIOBase):
    """Passes bytes on to `stream`, hashing and counting them on the way: a file's SHA-256
    is known the moment its last row is written, without reading it back."""

    def __init__(self, stream: BinaryIO):
        super().__init__()
        self._stream = stream
        self._digest = hashlib.sha256()
        self.bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._stream.write(data)
        self._digest.update(data)
        size = len(data) if isinstance(data, bytes) else memoryview(data).nbytes
        self.bytes += size
        return size

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class FolderSink:
    """Each file of the bundle as a file of `directory` (the command)."""

    def __init__(self, directory: Path):
        self.directory = directory

    def open(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return (self.directory / name).open("wb")


class ZipSink:
    """Each file of the bundle as a member of one ZIP, written as it comes (the page)."""

    def __init__(self, archive: zipfile.ZipFile, folder: str):
        self.archive = archive
        self.folder = folder

    def open(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        # force_zip64: a member's size is not known before it is written.
        return self.archive.open(f"{self.folder}/{name}", "w", force_zip64=True)


class Progress:
    """Tells the export's row how far the bundle got: datasets done, rows written."""

    def __init__(self, report: Callable[[int, int], None] | None = None):
        self._report = report
        self.datasets_done = 0
        self.rows_written = 0
        self._reported_rows = 0

    def rows(self, count: int) -> None:
        self.rows_written += count
        if self._report and self.rows_written - self._reported_rows >= PROGRESS_EVERY_ROWS:
            self._reported_rows = self.rows_written
            self._report(self.datasets_done, self.rows_written)

    def dataset_done(self) -> None:
        self.datasets_done += 1
        if self._report:
            self._reported_rows = self.rows_written
            self._report(self.datasets_done, self.rows_written)


def _write_file(sink, name: str, write: Callable[[BinaryIO], int]) -> WrittenFile:
    """`write(stream)` writes the file's bytes and returns its data rows."""
    with sink.open(name) as destination:
        hashing = HashingWriter(destination)
        buffered = io.BufferedWriter(hashing, buffer_size=HASH_BLOCK)
        count = write(buffered)
        buffered.flush()
        buffered.detach()
    return WrittenFile(name, count, hashing.hexdigest(), hashing.bytes)


def _csv_writer(names: list[str], cells, *, bom: bool, progress: Progress | None = None):
    def write(stream: BinaryIO) -> int:
        csv_file = CsvFile(stream, bom=bom)
        csv_file.header(names)
        pending = 0
        for row in cells:
            csv_file.write(row)
            pending += 1
            if progress is not None and pending == 1000:
                progress.rows(pending)
                pending = 0
        if progress is not None:
            progress.rows(pending)
        csv_file.close()
        return csv_file.rows

    return write


def _dataset_writer(dataset, context: ExportContext, progress: Progress):
    """On PostgreSQL, a dataset that is a projection of tables is streamed by the database
    itself (`COPY ... TO STDOUT`, `copy_sql.py`), byte for byte what the ORM path writes;
    elsewhere, and for the datasets computed in Python, the ORM iterator."""
    options = context.options
    names = header(dataset, options)
    if copy_sql.available(dataset, options):

        def write(stream: BinaryIO) -> int:
            count = copy_sql.copy_dataset(dataset, context, stream, bom=options.bom)
            progress.rows(count)
            return count

        return write
    return _csv_writer(names, rows(dataset, context), bom=options.bom, progress=progress)


def export_check(*, user, options: ExportOptions) -> None:
    """An identified export is the trial administrator's only, and carries its reason."""
    if not options.identified:
        return
    if user is None or not access_for(user).has(Role.ADMINISTRATOR):
        raise PermissionDenied(_("Only the trial administrator may export identifiers."))
    if not options.reason.strip():
        raise ValidationError({"reason": _("Say why identifiers are needed in this export.")})


def _check_datasets(options: ExportOptions) -> None:
    unknown = set(options.datasets) - set(DATASETS)
    if unknown:
        raise ValidationError(
            {"datasets": _("Unknown datasets: %(names)s") % {"names": ", ".join(sorted(unknown))}}
        )


def _write_bundle(sink, *, options: ExportOptions, user, source: str, progress: Progress):
    """Every file of the bundle into `sink`, the manifest last. Returns (manifest, files)."""
    chosen = [DATASETS[name] for name in options.datasets]
    context = ExportContext(options)
    exported_at = timezone.now()
    written = []
    # An export reads the same whatever the page's language: English labels and dictionary.
    with translation.override("en"):
        for dataset in chosen:
            written.append(
                _write_file(sink, dataset.file_name, _dataset_writer(dataset, context, progress))
            )
            progress.dataset_done()
        dictionary = (
            [text_cell(value) for value in row] for row in dictionary_rows(chosen, options)
        )
        written.append(
            _write_file(
                sink, DICTIONARY_FILE, _csv_writer(DICTIONARY_COLUMNS, dictionary, bom=options.bom)
            )
        )
        if options.odm:
            written.append(
                _write_file(
                    sink,
                    ODM_FILE,
                    lambda stream: odm_write(stream, context=context, exported_at=exported_at),
                )
            )
    protocol = Protocol.objects.filter(is_current=True).first()
    filters = options.filters()
    if options.site_ids is not None:
        filters["sites"] = sorted(
            Site.objects.filter(pk__in=options.site_ids).values_list("code", flat=True)
        )
    manifest = {
        "trial": protocol.code if protocol else "",
        "protocol_version": protocol.version if protocol else "",
        "exported_at": utc_iso(exported_at),
        "exported_by": user.get_username() if user is not None else "",
        "source": source,
        "identified": options.identified,
        "filters": filters,
        "files": [
            {"name": f.name, "rows": f.rows, "sha256": f.sha256, "bytes": f.bytes} for f in written
        ],
    }
    with sink.open(MANIFEST_FILE) as stream:
        stream.write((json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())
    return manifest, written, exported_at


def _record(export: DataExport, manifest: dict, written: list[WrittenFile]) -> None:
    export.protocol_version = manifest["protocol_version"]
    export.row_counts = {f.name: f.rows for f in written}
    export.file_hashes = {f.name: f.sha256 for f in written}
    export.filters = manifest["filters"]


def bundle_write(*, directory: Path, options: ExportOptions, user=None, source: str) -> dict:
    """Write each chosen dataset, the dictionary and the manifest into `directory`, then
    record the export. Returns the manifest. Refused (nothing written) when not allowed."""
    export_check(user=user, options=options)
    _check_datasets(options)
    manifest, written, exported_at = _write_bundle(
        FolderSink(directory), options=options, user=user, source=source, progress=Progress()
    )
    export = DataExport(
        exported_at=exported_at,
        exported_by=user,
        source=source,
        identified=options.identified,
        reason=options.reason.strip(),
        datasets=list(options.datasets),
    )
    _record(export, manifest, written)
    audited_save(export, user=user)
    return manifest


def _zip_writer(file) -> zipfile.ZipFile:
    return zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL)


def _folder_name(moment) -> str:
    return f"trialsite-export-{moment.strftime('%Y%m%dT%H%M%SZ')}"


def bundle_zip(*, options: ExportOptions, user) -> tuple[IO[bytes], str]:
    """The bundle as one ZIP in an anonymous temporary file (gone when closed), read from
    its start, with the file name to download it as. Recorded as an export, done."""
    export_check(user=user, options=options)
    _check_datasets(options)
    folder = _folder_name(timezone.now())
    archive = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the response, which closes it
    try:
        with _zip_writer(archive) as bundle:
            manifest, written, exported_at = _write_bundle(
                ZipSink(bundle, folder),
                options=options,
                user=user,
                source=ExportSource.PAGE,
                progress=Progress(),
            )
        export = DataExport(
            exported_at=exported_at,
            exported_by=user,
            source=ExportSource.PAGE,
            identified=options.identified,
            reason=options.reason.strip(),
            datasets=list(options.datasets),
        )
        _record(export, manifest, written)
        audited_save(export, user=user)
    except BaseException:
        archive.close()
        raise
    archive.seek(0)
    return archive, f"{folder}.zip"


# --- Bundles built by the worker ----------------------------------------------------------------


def options_to_json(options: ExportOptions) -> dict:
    data = asdict(options)
    data["datasets"] = list(options.datasets)
    data["site_ids"] = None if options.site_ids is None else sorted(options.site_ids)
    return data


def options_from_json(data: dict) -> ExportOptions:
    site_ids = data.get("site_ids")
    return ExportOptions(
        **{
            **data,
            "datasets": tuple(data["datasets"]),
            "site_ids": None if site_ids is None else frozenset(site_ids),
        }
    )


def export_request(*, user, options: ExportOptions, enqueue: Callable[[int], None]) -> DataExport:
    """A bundle for the worker to write: the export's row, queued, and `enqueue(pk)` called
    in the same transaction (it sends the task once the row is committed). Refused (nothing
    written) when not allowed."""
    export_check(user=user, options=options)
    _check_datasets(options)
    with transaction.atomic():
        export = audited_save(
            DataExport(
                exported_by=user,
                source=ExportSource.PAGE,
                identified=options.identified,
                reason=options.reason.strip(),
                datasets=list(options.datasets),
                status=ExportStatus.QUEUED,
                options=options_to_json(options),
                datasets_total=len(options.datasets),
            ),
            user=user,
        )
        enqueue(export.pk)
    return export


def export_path(export: DataExport) -> Path:
    return Path(settings.EXPORT_ROOT) / export.file_name


def _claim(export_id: int, *, from_status: str, to_status: str, reason: str):
    """The export, moved from one status to the next under a row lock (a second worker, or
    a second delivery of the task, finds it moved and gets None)."""
    with transaction.atomic():
        export = (
            DataExport.objects.select_for_update(of=("self",))
            .filter(pk=export_id, status=from_status)
            .select_related("exported_by")
            .first()
        )
        if export is None:
            return None
        export.status = to_status
        return audited_save(export, reason=reason)


def bundle_build(*, export_id: int) -> bool:
    """Write a queued export's ZIP into the private folder, telling the page how far it got,
    then mark it done (with its files' hashes and its expiry) or failed. Idempotent: only a
    queued export is claimed, so a second delivery of the task writes nothing."""
    export = _claim(
        export_id,
        from_status=ExportStatus.QUEUED,
        to_status=ExportStatus.RUNNING,
        reason="The worker began writing the bundle.",
    )
    if export is None:
        return False
    options = options_from_json(export.options)
    folder = _folder_name(export.exported_at)
    file_name = f"{export.pk}-{folder}.zip"
    path = Path(settings.EXPORT_ROOT) / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    ExportProgress.objects.update_or_create(
        export=export, defaults={"datasets_done": 0, "rows_written": 0}
    )

    def report(datasets_done: int, rows_written: int) -> None:
        ExportProgress.objects.filter(export_id=export_id).update(
            datasets_done=datasets_done, rows_written=rows_written
        )

    progress = Progress(report)
    try:
        with partial.open("wb") as raw:
            # Not seekable, so zipfile writes each member once, in order, as it comes, and
            # the ZIP's own SHA-256 is known when its last byte is written.
            hashing = HashingWriter(raw)
            with _zip_writer(hashing) as bundle:
                manifest, written, exported_at = _write_bundle(
                    ZipSink(bundle, folder),
                    options=options,
                    user=export.exported_by,
                    source=ExportSource.PAGE,
                    progress=progress,
                )
        partial.replace(path)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        logger.exception("export %s failed", export_id)
        export.refresh_from_db()
        export.status = ExportStatus.FAILED
        # The kind of error only: a message could quote a record's value.
        export.error = type(exc).__name__[:500]
        audited_save(export, reason="The worker could not write the bundle.")
        return False
    report(progress.datasets_done, progress.rows_written)
    export.refresh_from_db()
    _record(export, manifest, written)
    export.exported_at = exported_at
    export.status = ExportStatus.DONE
    export.file_name = file_name
    export.file_bytes = hashing.bytes
    export.file_sha256 = hashing.hexdigest()
    export.expires_at = timezone.now() + timedelta(days=settings.EXPORT_KEEP_DAYS)
    audited_save(export, reason="The worker wrote the bundle.")
    return True


def export_for_user(user, pk: int) -> DataExport:
    """An export from the page that the user may see: their own (the file holds what their
    access allowed when they asked), or any for the trial administrator, who may see all.
    Another's is a DoesNotExist, a 404 to the page."""
    exports = DataExport.objects.filter(source=ExportSource.PAGE)
    if not access_for(user).has(Role.ADMINISTRATOR):
        exports = exports.filter(exported_by=user)
    return exports.get(pk=pk)


def export_download(*, export: DataExport, user) -> IO[bytes]:
    """The kept ZIP, opened for reading, the download recorded. Refused once expired."""
    if export.status != ExportStatus.DONE or not export.file_name:
        raise DataExport.DoesNotExist
    if export.expires_at is not None and export.expires_at <= timezone.now():
        raise DataExport.DoesNotExist
    if export.identified and not access_for(user).has(Role.ADMINISTRATOR):
        raise PermissionDenied(_("Only the trial administrator may export identifiers."))
    try:
        stream = export_path(export).open("rb")
    except FileNotFoundError as exc:
        raise DataExport.DoesNotExist from exc
    audited_save(ExportDownload(export=export, downloaded_by=user), user=user)
    return stream


def exports_expire(*, now=None) -> int:
    """Delete each kept file whose time is up and mark its export expired; an export the
    worker never finished (it died) is marked failed once the task's time limit is long
    past. Idempotent: each export is claimed under a row lock before its file goes."""
    now = now or timezone.now()
    expired = 0
    due = DataExport.objects.filter(status=ExportStatus.DONE, expires_at__lte=now)
    for export_id in list(due.values_list("pk", flat=True)):
        export = _claim(
            export_id,
            from_status=ExportStatus.DONE,
            to_status=ExportStatus.EXPIRED,
            reason="Its time was up: the file was deleted.",
        )
        if export is None:
            continue
        if export.file_name:
            export_path(export).unlink(missing_ok=True)
        expired += 1
    stale = now - timedelta(seconds=settings.EXPORT_TASK_TIME_LIMIT + 600)
    running = DataExport.objects.filter(status=ExportStatus.RUNNING, exported_at__lte=stale)
    for export_id in list(running.values_list("pk", flat=True)):
        _claim(
            export_id,
            from_status=ExportStatus.RUNNING,
            to_status=ExportStatus.FAILED,
            reason="The worker stopped before the bundle was written.",
        )
    return expired


RECENT_EXPORTS = 10


def recent_exports(limit: int = RECENT_EXPORTS) -> list[DataExport]:
    """The latest exports, newest first, each with `.exported_at_utc` as the page shows it."""
    exports = list(DataExport.objects.select_related("exported_by")[:limit])
    for export in exports:
        export.exported_at_utc = utc_iso(export.exported_at)
    return exports


def stream_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    with stream:
        while block := stream.read(HASH_BLOCK):
            yield block
