"""The access review as CSV: one row per account, English codes and UTC times like every other
export of the trial, each text cell neutralised against spreadsheet formulas (the exports' own
safe-CSV writer). Accounts and roles only: no patient data."""

from __future__ import annotations

import io
from datetime import UTC

from .core.selectors import AccessReviewRow
from .exports.safe_csv import CsvFile, text_cell

COLUMNS = [
    "username",
    "full_name",
    "roles",  # role@SITE, or role@all for the roles that cover every site; "; " between
    "active",
    "account_expires_on",
    "account_expired",
    "last_login_utc",
    "mfa",  # the second factor set up: totp or none
    "mfa_required",
]


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def row_cells(row: AccessReviewRow) -> list[str]:
    roles = "; ".join(f"{a.role}@{a.site.code if a.site_id else 'all'}" for a in row.assignments)
    return [
        text_cell(row.username),
        text_cell(row.full_name),
        text_cell(roles),
        _yes_no(row.is_active),
        row.expires_on.isoformat() if row.expires_on else "",
        _yes_no(row.expired),
        row.last_login.astimezone(UTC).isoformat(timespec="seconds") if row.last_login else "",
        text_cell(row.mfa),
        _yes_no(row.mfa_required),
    ]


def access_review_csv_bytes(rows: list[AccessReviewRow]) -> bytes:
    stream = io.BytesIO()
    csv_file = CsvFile(stream)
    csv_file.header(COLUMNS)
    csv_file.write_all(row_cells(row) for row in rows)
    csv_file.close()
    return stream.getvalue()
