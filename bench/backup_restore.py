"""Backup and restore drill: pg_dump of a trial, restored into an empty database, compared
table by table, and served by the app from the restored copy.

    # a scratch trial seeded here (N randomized participants), dumped, restored, compared:
    DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/backup_restore.py --seed 200
    # or a copy of an existing install's database (read only; the copy is dropped after):
    DEBUG=1 DATABASE_URL=postgres://USER@HOST/ctms .venv/bin/python bench/backup_restore.py

What "identical" means here, each printed:
- every table: the same number of rows and the same MD5 over its rows (order-independent);
- the audit trail (every history table, the access log): the same, listed on its own;
- every randomization list: its SHA-256 recomputed from the restored entries equals the one
  recorded when it was written and when it was locked;
- the append-only triggers of the history tables exist in the copy (pg_dump carries them);
- the app serves the copy: the participant list and a participant's page, whose name it can
  read only with the same FIELD_ENCRYPTION_KEY (the identifiers are stored encrypted).

The databases are scratch ones named with this process's id, dropped at the end (--keep to
keep them). tests/trialsite/test_backup_restore.py runs the same steps on the test database.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HISTORY_PREFIXES = ("historical",)
AUDIT_TABLES = ("trialsite_accessevent", "arms_listaccesslog")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _psql(url: str):
    import psycopg2

    connection = psycopg2.connect(url)
    connection.autocommit = True
    return connection


def create_database(server_url: str, name: str) -> None:
    with contextlib.closing(_psql(with_database(server_url, "postgres"))) as conn:
        conn.cursor().execute(f'CREATE DATABASE "{name}"')


def drop_database(server_url: str, name: str) -> None:
    with contextlib.closing(_psql(with_database(server_url, "postgres"))) as conn:
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def dump(source_url: str, path: Path) -> float:
    """pg_dump's custom format (compressed; pg_restore can pick from it). Returns seconds."""
    started = time.monotonic()
    subprocess.run(
        ["pg_dump", "--format=custom", "--no-owner", "--file", str(path), source_url], check=True
    )
    return time.monotonic() - started


def restore(path: Path, target_url: str) -> float:
    """Into an empty database; any error stops it (a half-restored trial is no backup)."""
    started = time.monotonic()
    subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", "--dbname", target_url, str(path)],
        check=True,
    )
    return time.monotonic() - started


def table_fingerprints(url: str) -> dict[str, tuple[int, str]]:
    """Each table of the public schema: its row count and an MD5 over its rows, in an order
    that does not depend on the physical order (a restore may lay rows out differently)."""
    with contextlib.closing(_psql(url)) as conn:
        cursor = conn.cursor()
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        tables = [row[0] for row in cursor.fetchall()]
        result = {}
        for table in tables:
            cursor.execute(
                f"SELECT count(*), md5(coalesce(string_agg(md5(t::text), '' "  # noqa: S608 - catalogue names
                f"ORDER BY md5(t::text)), '')) FROM \"{table}\" t"
            )
            count, digest = cursor.fetchone()
            result[table] = (count, digest)
        return result


def history_triggers(url: str) -> int:
    with contextlib.closing(_psql(url)) as conn:
        cursor = conn.cursor()
        cursor.execute(
            "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal "
            "AND tgname LIKE 'pgtrigger_history_append_only%%'"
        )
        return cursor.fetchone()[0]


def is_audit_table(table: str) -> bool:
    name = table.split("_", 1)[-1]
    return name.startswith(HISTORY_PREFIXES) or table in AUDIT_TABLES


@contextlib.contextmanager
def on_database(name: str):
    """Django's default connection on another database of the same server, then back."""
    from django.db import connection

    real = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["NAME"] = name
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(real)


def list_hashes() -> dict[int, dict[str, str]]:
    """Each randomization list's recorded hashes and the one recomputed from its entries, on
    the database Django is connected to."""
    from arms import rules
    from arms.models import RandomizationList
    from arms.selectors import list_entries

    return {
        rl.pk: {
            "written": rl.written_sha256,
            "locked": rl.sha256,
            "recomputed": rules.list_sha256(list_entries(rl)),
        }
        for rl in RandomizationList.objects.order_by("pk")
    }


def compare(source: dict, target: dict) -> list[str]:
    """The tables that differ, each with both counts: empty when the copy is identical."""
    differences = []
    for table in sorted(set(source) | set(target)):
        if source.get(table) != target.get(table):
            differences.append(f"{table}: {source.get(table)} vs {target.get(table)}")
    return differences


def served_pages(client, participant, **extra) -> dict[str, int]:
    """The pages a coordinator opens first, from the database Django is connected to; the
    participant's page must show the name, decrypted with the install's key."""
    pages = {
        "participant list": client.get("/participants/", **extra),
        "participant page": client.get(f"/participants/{participant.study_number}/", **extra),
        "roster": client.get("/arms/roster/", **extra),
    }
    result = {name: response.status_code for name, response in pages.items()}
    page = pages["participant page"].content.decode()
    result["name readable"] = int(participant.name in page)
    return result


def raw_identifier(participant) -> str:
    """The name as stored: ciphertext, unreadable without FIELD_ENCRYPTION_KEY."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM enrollment_participant WHERE id = %s", [participant.pk])
        return cursor.fetchone()[0]


# --- The command ------------------------------------------------------------------------------


def seed(participants: int):
    """A small trial: the protocol, two sites and their staff, an active list, and
    `participants` randomized through the service (allocations, notices, dose and visit
    schedules, every record with its history)."""
    from django.conf import settings

    from arms.services import participant_randomize
    from tests.factories import (
        SiteFactory,
        active_randomization_list,
        ready_participant,
        user_with_role,
    )
    from trialsite.core.models import Role
    from trialsite.core.protocol import definition_from_toml
    from trialsite.core.services import protocol_load

    protocol_load(definition=definition_from_toml(settings.PROTOCOL_FILE))
    site = SiteFactory(code="SHE", name="Shanghai East Hospital", time_zone="Asia/Shanghai")
    SiteFactory(code="WUH", name="Wuhan Jinyintan Hospital", time_zone="Asia/Shanghai")
    administrator = user_with_role(Role.ADMINISTRATOR, username="backup-admin")
    coordinator = user_with_role(Role.COORDINATOR, site, username="backup-coordinator")
    investigator = user_with_role(Role.INVESTIGATOR, site, username="backup-investigator")
    active_randomization_list(administrator=administrator, per_stratum=max(40, participants))
    last = None
    for _ in range(participants):
        last = ready_participant(site=site, user=coordinator, investigator=investigator)
        participant_randomize(participant=last, user=coordinator, idempotency_key=uuid.uuid4())
    return coordinator, last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed a scratch trial of N")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    args = parser.parse_args()

    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trialsite.settings")
    server_url = os.environ.get("DATABASE_URL", "")
    if not server_url.startswith("postgres"):
        sys.exit("Set DATABASE_URL=postgres://... (pg_dump needs PostgreSQL).")
    scratch = f"backup_drill_{os.getpid()}"
    if args.seed:
        source_name = f"{scratch}_source"
        create_database(server_url, source_name)
        os.environ["DATABASE_URL"] = with_database(server_url, source_name)
    source_url = os.environ["DATABASE_URL"]
    target_name = f"{scratch}_restored"
    target_url = with_database(server_url, target_name)
    # Notices enqueued while seeding go to a scratch broker folder, not to a running worker.
    os.environ.pop("REDIS_URL", None)
    os.environ["BROKER_DIR"] = tempfile.mkdtemp(prefix="backup-broker-")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    try:
        if args.seed:
            started = time.monotonic()
            call_command("migrate", verbosity=0)
            coordinator, participant = seed(args.seed)
            print(
                f"Seeded {args.seed} randomized participants in {time.monotonic() - started:.1f} s"
            )
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "trial.dump"
            took = dump(source_url, path)
            print(f"pg_dump: {path.stat().st_size / 1e6:.1f} MB in {took:.1f} s")
            create_database(server_url, target_name)
            print(f"pg_restore into the empty {target_name}: {restore(path, target_url):.1f} s")
        source, target = table_fingerprints(source_url), table_fingerprints(target_url)
        differences = compare(source, target)
        audit = [t for t in source if is_audit_table(t)]
        print(
            f"{len(source)} tables, {sum(c for c, _ in source.values())} rows; "
            f"audit trail: {len(audit)} tables, {sum(source[t][0] for t in audit)} rows; "
            f"tables that differ: {len(differences)}"
        )
        for line in differences:
            print("  DIFFERS", line)
        triggers = (history_triggers(source_url), history_triggers(target_url))
        print(
            f"append-only history triggers: {triggers[0]} in the source, {triggers[1]} in the copy"
        )
        before = list_hashes()
        with on_database(target_name):
            after = list_hashes()
            lists_ok = before == after and all(
                h["recomputed"] == h["written"] and h["recomputed"] == (h["locked"] or h["written"])
                for h in after.values()
            )
            print(f"randomization lists: {len(after)}, hashes identical and verified: {lists_ok}")
            # As the install's own host, over HTTPS when DEBUG is off (no redirect).
            host = next((h for h in settings.ALLOWED_HOSTS if h[0] not in ".*"), "localhost")
            client = Client(HTTP_HOST=host)
            secure = not settings.DEBUG
            if args.seed:
                client.force_login(coordinator)  # a bench, not a test: no login form here
                pages = served_pages(client, participant, secure=secure)
                stored = raw_identifier(participant)
                print(f"served from the copy: {pages}; the name as stored: {stored[:16]}...")
            else:
                pages = {"healthz": client.get("/healthz", secure=secure).status_code}
                print(f"served from the copy: {pages}")
        ok = not differences and lists_ok and triggers[0] == triggers[1]
        ok = ok and all(code == 200 for name, code in pages.items() if name != "name readable")
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        if not args.keep:
            from django.db import connections

            connections.close_all()
            drop_database(server_url, target_name)
            if args.seed:
                drop_database(server_url, database_name(source_url))


if __name__ == "__main__":
    sys.exit(main())
