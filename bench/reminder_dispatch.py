"""One reminder dispatch cycle with 1,000 due rows, in a table of 10,000 and of 1,000,000.

    DEBUG=1 .venv/bin/python bench/reminder_dispatch.py            # SQLite, a scratch file
    DEBUG=1 DATABASE_URL=postgres://.../scratch .venv/bin/python bench/reminder_dispatch.py

Each size gets a fresh database (SQLite: a file under var/; PostgreSQL: the given database,
emptied of dosing rows first). The outbox rows and their doses are seeded with raw SQL (bench
only: doses are audited trial data and have no history here). Mail goes to Django's locmem
backend, so the cycle measures the dispatcher, not a mail server. If the due rows are found
through the (status, due_at) index, the two cycles cost about the same: the ratio is ~1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DUE = 1_000
PER_DOSE = 3  # reminders per dose: 24 h, 1 h, overdue alert
DOSES_PER_PARTICIPANT = 10_000


def setup_django(database_url: str | None) -> None:
    os.environ.setdefault("DEBUG", "1")
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trialsite.settings")
    import django

    django.setup()


# The bench empties its own database's doses before seeding; they are written with raw SQL
# below anyway, and nothing here is trial data.
BENCH_DATABASE = "The benchmark's own throwaway database, emptied before it is seeded."


def insert_many(sql: str, rows: list[tuple]) -> None:
    """executemany, or psycopg2's execute_values on PostgreSQL (one round trip per page)."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            from psycopg2.extras import execute_values

            head = sql.split(" VALUES ")[0]
            execute_values(cursor.cursor, head + " VALUES %s", rows, page_size=10_000)
        else:
            cursor.executemany(sql, rows)


def seed(total: int) -> None:
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from arms.models import Arm
    from dosing.models import Reminder, ScheduledDose
    from enrollment.services import participant_register
    from tests.factories import SiteFactory, user_with_role
    from trialsite.core.audit import unaudited_bulk_writes
    from trialsite.core.models import Role, Site
    from trialsite.core.protocol import definition_from_toml
    from trialsite.core.services import protocol_load

    call_command("migrate", verbosity=0)
    Reminder.objects.all().delete()
    with unaudited_bulk_writes(BENCH_DATABASE):
        ScheduledDose.objects.all().delete()
    from django.conf import settings

    protocol_load(definition=definition_from_toml(settings.PROTOCOL_FILE))
    site = Site.objects.filter(code="BENCH").first() or SiteFactory(code="BENCH", name="Bench")
    if not site.role_assignments.exists():
        user_with_role(Role.COORDINATOR, site, username="bench-coordinator")
        user_with_role(Role.INVESTIGATOR, site, username="bench-investigator")
    schedule = Arm.objects.get(code="MSC").dose_schedules.get()
    staff = site.role_assignments.first().user
    doses = -(-total // PER_DOSE)
    participants = [
        participant_register(
            site=site,
            user=staff,
            name=f"Bench {n}",
            mrn=f"BENCH{time.time_ns()}{n}",
            sex="F",
            date_of_birth=timezone.localdate().replace(year=1970),
        )
        for n in range(-(-doses // DOSES_PER_PARTICIPANT))
    ]
    ops = connection.ops
    now = timezone.now()
    due_at = now + timedelta(days=2)
    dose_rows = [
        (
            participants[i // DOSES_PER_PARTICIPANT].pk,
            schedule.pk,
            i % DOSES_PER_PARTICIPANT + 1,
            1,
            ops.adapt_datetimefield_value(due_at),
            ops.adapt_datetimefield_value(due_at - timedelta(hours=9)),
            ops.adapt_datetimefield_value(due_at + timedelta(hours=15)),
            ops.adapt_decimalfield_value(Decimal("70000000"), 20, 4),
            "cells",
            "",
            "scheduled",
        )
        for i in range(doses)
    ]
    insert_many(
        "INSERT INTO dosing_scheduleddose (participant_id, schedule_id, sequence, study_day,"
        " due_at, window_start, window_end, planned_amount, amount_unit, amount_note, status)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        dose_rows,
    )
    dose_ids = list(ScheduledDose.objects.order_by("pk").values_list("pk", "participant_id"))
    created = ops.adapt_datetimefield_value(now)
    rows = []
    for n in range(total):
        dose_id, participant_id = dose_ids[n // PER_DOSE]
        kind, lead = [("lead", 24), ("lead", 1), ("overdue", 0)][n % PER_DOSE]
        # The first DUE rows (spread over the table) are due a minute ago; the rest are
        # spread over the month after tomorrow.
        is_due = n % (total // DUE) == 0 and n // (total // DUE) < DUE
        when = (
            now - timedelta(minutes=1) if is_due else now + timedelta(days=1, seconds=n % 2_592_000)
        )
        rows.append(
            (
                dose_id,
                participant_id,
                kind,
                lead,
                ops.adapt_datetimefield_value(when),
                "pending",
                0,
                "",
                "",
                "",
                0,
                "",
                created,
            )
        )
    for start in range(0, len(rows), 50_000):
        insert_many(
            "INSERT INTO dosing_reminder (scheduled_dose_id, participant_id, kind, lead_hours,"
            " due_at, status, attempts, claimed_by, recipients, last_error, interrupted,"
            " cancelled_reason, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows[start : start + 50_000],
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    assert Reminder.objects.count() == total
    assert Reminder.objects.filter(due_at__lte=now).count() == DUE


def due_query_plan() -> str:
    from django.db import connection
    from django.db.models import Q
    from django.utils import timezone

    from dosing.models import Reminder

    qs = (
        Reminder.objects.filter(status="pending", due_at__lte=timezone.now())
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now()))
        .order_by("due_at", "pk")
        .values_list("pk", flat=True)[:500]
    )
    sql, params = qs.query.sql_with_params()
    prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    with connection.cursor() as cursor:
        cursor.execute(prefix + sql, params)
        return " | ".join(str(row[-1]) for row in cursor.fetchall())


def one_cycle() -> tuple[float, int]:
    from django.core import mail

    from dosing.services import reminders_dispatch

    mail.outbox = []
    started = time.perf_counter()
    result = reminders_dispatch(worker="bench")
    elapsed = time.perf_counter() - started
    assert result.sent == DUE == len(mail.outbox), (result.sent, len(mail.outbox))
    return elapsed, result.sent


def due_select_ms(repeats: int = 7) -> float:
    from django.db.models import Q
    from django.utils import timezone

    from dosing.models import Reminder

    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        list(
            Reminder.objects.filter(status="pending", due_at__lte=timezone.now())
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now()))
            .order_by("due_at", "pk")
            .values_list("pk", flat=True)[:500]
        )
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run(total: int, database_url: str | None) -> dict:
    """In a child process per size, so each gets its own fresh database and settings."""
    import json
    import subprocess

    out = subprocess.run(
        [sys.executable, __file__, "--child", str(total)]
        + (["--database-url", database_url] if database_url else []),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if out.returncode:
        sys.exit(f"the {total:,} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(total: int, database_url: str | None) -> None:
    import json

    if not database_url:
        scratch = ROOT / "var" / f"bench-reminders-{total}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{scratch}{suffix}").unlink(missing_ok=True)
        database_url = f"sqlite:///{scratch}"
    setup_django(database_url)
    from django.db import connection

    started = time.perf_counter()
    seed(total)
    seeded = time.perf_counter() - started
    plan = due_query_plan()
    select_ms = due_select_ms()
    cycle, sent = one_cycle()
    print(
        json.dumps(
            {
                "total": total,
                "vendor": connection.vendor,
                "seed_s": round(seeded, 1),
                "cycle_s": cycle,
                "sent": sent,
                "select_ms": select_ms,
                "plan": plan,
            }
        )
    )
    if connection.vendor == "sqlite":
        connection.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database_url.removeprefix('sqlite:///')}{suffix}").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--child", type=int)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.database_url)
        return
    small = run(10_000, args.database_url)
    large = run(1_000_000, args.database_url)
    for r in (small, large):
        print(
            f"{r['vendor']:10} {r['total']:>9,} reminders, {r['sent']:,} due: one cycle"
            f" {r['cycle_s']:.3f} s; find-due query {r['select_ms']:.2f} ms"
            f" (seeded in {r['seed_s']} s)"
        )
    print(f"query plan (1,000,000): {large['plan']}")
    print(
        f"ratio 1,000,000 / 10,000: cycle {large['cycle_s'] / small['cycle_s']:.2f}x,"
        f" find-due query {large['select_ms'] / small['select_ms']:.2f}x"
        " (the table is 100x larger)"
    )


if __name__ == "__main__":
    main()
