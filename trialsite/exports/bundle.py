"""The bundle: the chosen datasets, the dictionary and a manifest, written file by file to a
folder (never the whole dataset in memory), zipped for the page, and recorded as an export.

The manifest holds each file's row count and SHA-256, the protocol version, the UTC time, the
options and whether identifiers are in it; the same hashes are kept in the `DataExport` row,
which is itself in the audit trail.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from trialsite.core.access import access_for
from trialsite.core.audit import audited_save
from trialsite.core.clock import utc_iso
from trialsite.core.models import Protocol, Role, Site
from trialsite.models import DataExport, ExportSource

from .columns import ExportContext, ExportOptions, header, rows
from .datasets import DATASETS
from .dictionary import DICTIONARY_COLUMNS, dictionary_rows
from .safe_csv import CsvFile, text_cell

DICTIONARY_FILE = "dictionary.csv"
MANIFEST_FILE = "manifest.json"
HASH_BLOCK = 1024 * 1024


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


def _write_csv(path: Path, names: list[str], cells, *, bom: bool) -> WrittenFile:
    with path.open("wb") as stream:
        csv_file = CsvFile(stream, bom=bom)
        csv_file.header(names)
        csv_file.write_all(cells)
        csv_file.close()
    return WrittenFile(path.name, csv_file.rows, sha256_of(path), path.stat().st_size)


def export_check(*, user, options: ExportOptions) -> None:
    """An identified export is the trial administrator's only, and carries its reason."""
    if not options.identified:
        return
    if user is None or not access_for(user).has(Role.ADMINISTRATOR):
        raise PermissionDenied(_("Only the trial administrator may export identifiers."))
    if not options.reason.strip():
        raise ValidationError({"reason": _("Say why identifiers are needed in this export.")})


def bundle_write(*, directory: Path, options: ExportOptions, user=None, source: str) -> dict:
    """Write each chosen dataset, the dictionary and the manifest into `directory`, then
    record the export. Returns the manifest. Refused (nothing written) when not allowed."""
    export_check(user=user, options=options)
    unknown = set(options.datasets) - set(DATASETS)
    if unknown:
        raise ValidationError(
            {"datasets": _("Unknown datasets: %(names)s") % {"names": ", ".join(sorted(unknown))}}
        )
    chosen = [DATASETS[name] for name in options.datasets]
    context = ExportContext(options)
    exported_at = timezone.now()
    written = []
    # An export reads the same whatever the page's language: English labels and dictionary.
    with translation.override("en"):
        for dataset in chosen:
            written.append(
                _write_csv(
                    directory / dataset.file_name,
                    header(dataset, options),
                    rows(dataset, context),
                    bom=options.bom,
                )
            )
        dictionary = (
            [text_cell(value) for value in row] for row in dictionary_rows(chosen, options)
        )
        written.append(
            _write_csv(directory / DICTIONARY_FILE, DICTIONARY_COLUMNS, dictionary, bom=options.bom)
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
    (directory / MANIFEST_FILE).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    audited_save(
        DataExport(
            exported_at=exported_at,
            exported_by=user,
            source=source,
            identified=options.identified,
            reason=options.reason.strip(),
            protocol_version=manifest["protocol_version"],
            datasets=list(options.datasets),
            row_counts={f.name: f.rows for f in written},
            file_hashes={f.name: f.sha256 for f in written},
            filters=filters,
        ),
        user=user,
    )
    return manifest


def bundle_zip(*, options: ExportOptions, user) -> tuple[IO[bytes], str]:
    """The bundle as one ZIP in an anonymous temporary file (gone when closed), read from
    its start, with the file name to download it as."""
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    folder = f"trialsite-export-{stamp}"
    export_check(user=user, options=options)
    archive = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the response, which closes it
    try:
        with tempfile.TemporaryDirectory(prefix="export-") as work:
            directory = Path(work)
            bundle_write(directory=directory, options=options, user=user, source=ExportSource.PAGE)
            with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
                for path in sorted(directory.iterdir()):
                    bundle.write(path, f"{folder}/{path.name}")
    except BaseException:
        archive.close()
        raise
    archive.seek(0)
    return archive, f"{folder}.zip"


RECENT_EXPORTS = 10


def recent_exports(limit: int = RECENT_EXPORTS) -> list[DataExport]:
    """The latest exports, newest first, each with `.exported_at_utc` as the page shows it."""
    exports = list(DataExport.objects.select_related("exported_by")[:limit])
    for export in exports:
        export.exported_at_utc = utc_iso(export.exported_at)
    return exports
