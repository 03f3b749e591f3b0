"""The de-identified export bundle on PostgreSQL against a bare `COPY ... TO STDOUT` of the
same rows in the same run, and the peak memory of the export at two trial sizes.

    DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/exportbench_bench \\
        .venv/bin/python bench/export.py                      # 10,000 then 100,000
    ... bench/export.py --participants 20000                  # a quick run: 2,000 then 20,000

A throw-away database (`test_` + the URL's name, created and destroyed here as the test runner
does) gets the protocol, two sites and a randomization list through the services, then the
participants, their allocations (STD, PAX, MSC in turn), their scheduled doses (PAX 10,
MSC 2), their six scheduled visits and a visit record for each visit up to day 7, written with
`INSERT ... SELECT` over `generate_series` (bench data only: no history rows), so that 100,000
participants take seconds, not hours.

At each size (a tenth of --participants, then --participants) the export runs in a child
process, as the worker's task would (`bundle_build` of a queued export: ZIP on disk, hashed as
it is written): its wall time and its peak resident memory (ru_maxrss of that process, from
wait4). The bundle holds the datasets of those rows (participants, allocations,
scheduled_doses, visits), the dictionary and the manifest. In the same run, the parent times
a bare `COPY (SELECT * FROM <table>) TO STDOUT WITH CSV` of the same four tables into
/dev/null: the floor the bundle is measured against (goal: at most 2x); and the same four
datasets' COPY without the ZIP (formatting only), to show where the time goes.
"""

# The SQL here is built from the models' table names and integers of this script, never input.
# ruff: noqa: S608

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATASETS = ("participants", "allocations", "scheduled_doses", "visits")
RECORDED_UP_TO_DAY = 7


def setup_django() -> None:
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trialsite.settings")
    import django

    django.setup()


# --- Seeding ------------------------------------------------------------------------------------


def seed_trial() -> dict:
    """The protocol, two sites, the cast and an active list, through the services."""
    from django.conf import settings

    from tests.factories import SiteFactory, active_randomization_list, user_with_role
    from trialsite.core.models import Role
    from trialsite.core.protocol import definition_from_toml
    from trialsite.core.services import protocol_load

    protocol_load(definition=definition_from_toml(settings.PROTOCOL_FILE))
    sites = [
        SiteFactory(code="SHE", time_zone="Asia/Shanghai"),
        SiteFactory(code="WUH", time_zone="Asia/Shanghai"),
    ]
    administrator = user_with_role(Role.ADMINISTRATOR, username="bench-admin")
    data_manager = user_with_role(Role.DATA_MANAGER, username="bench-dm")
    coordinator = user_with_role(Role.COORDINATOR, sites[0], username="bench-coordinator")
    randomization_list = active_randomization_list(administrator=administrator, per_stratum=2)
    return {
        "sites": sites,
        "data_manager": data_manager,
        "coordinator": coordinator,
        "list": randomization_list,
    }


def seed_participants(cast: dict, first: int, last: int) -> None:
    """Participants first..last (ids by generate_series), allocated, with doses and visits."""
    from django.db import connection

    from arms.models import Allocation, Arm, ListEntry, Stratum
    from dosing.models import DoseSchedule, ScheduledDose
    from enrollment.models import Participant
    from outcomes import rules as outcome_rules
    from outcomes.models import ScheduledVisit, VisitDefinition, VisitRecord

    she, wuh = cast["sites"]
    user = cast["coordinator"].pk
    arms = list(Arm.objects.filter(protocol__is_current=True).order_by("order", "pk"))
    arm_of = "CASE p.id % 3 " + " ".join(f"WHEN {i} THEN {a.pk}" for i, a in enumerate(arms))
    arm_of += " END"
    strata = {(s.site_id, s.severity): s.pk for s in Stratum.objects.filter(
        randomization_list=cast["list"])}  # fmt: skip
    stratum_of = (
        "CASE "
        + " ".join(
            f"WHEN p.site_id = {site} AND (p.id / 2) % 2 = {0 if severity == 'severe' else 1} "
            f"THEN {pk}"
            for (site, severity), pk in strata.items()
        )
        + " END"
    )
    table = lambda model: model._meta.db_table  # noqa: E731
    measured = outcome_rules.MEASURED_FIELDS
    values = {
        "who_score": "4 + v.id % 3",
        "spo2": "90 + v.id % 8",
        "respiratory_support": "'oxygen'",
        "pao2": "80.0",
        "fio2": "0.40",
        "lymphocytes": "0.80",
        "crp": "12.50",
        "il6": "5.00",
        "chest_ct": "'stable'",
    }
    record_columns = ["scheduled_visit_id", "visit_date"]
    record_values = ["v.id", "v.due_on"]
    for name in measured:
        record_columns += [name, f"{name}_not_done", f"{name}_not_done_reason"]
        record_values += [values[name], "false", "''"]
    record_columns += ["vital_status", "recorded_by_id", "recorded_at"]
    record_values += ["'alive'", str(user), "now()"]
    statements = [
        f"""INSERT INTO {table(Participant)} (id, site_id, study_number, sequence, name, mrn,
            mrn_hash, contact, sex, date_of_birth, registered_by_id, registered_at)
        SELECT g, CASE WHEN g % 2 = 0 THEN {she.pk} ELSE {wuh.pk} END,
            CASE WHEN g % 2 = 0 THEN 'SHE-' ELSE 'WUH-' END || lpad(((g + 1) / 2)::text, 6, '0'),
            (g + 1) / 2, 'bench', 'bench', md5(g::text), '', CASE WHEN g % 2 = 0 THEN 'F'
            ELSE 'M' END, date '1930-01-01' + (g * 7919) % 25000, {user},
            now() - ((g % 300) || ' days')::interval - interval '1 hour'
        FROM generate_series({first}, {last}) g""",
        f"""INSERT INTO {table(ListEntry)} (stratum_id, sequence, arm_id, block, block_size)
        SELECT {stratum_of}, 1000 + p.id, {arm_of}, p.id, 6
        FROM {table(Participant)} p WHERE p.id BETWEEN {first} AND {last}""",
        f"""INSERT INTO {table(Allocation)} (participant_id, entry_id, stratum_id, arm_id,
            randomization_number, randomized_at, randomized_by_id, idempotency_key, status,
            error_reason)
        SELECT p.id, e.id, e.stratum_id, e.arm_id, 'R-' || p.id, p.registered_at
            + interval '30 minutes', {user}, md5(p.id::text)::uuid, 'valid', ''
        FROM {table(Participant)} p JOIN {table(ListEntry)} e
            ON e.sequence = 1000 + p.id AND e.stratum_id = {stratum_of}
        WHERE p.id BETWEEN {first} AND {last}""",
        f"""INSERT INTO {table(ScheduledDose)} (participant_id, schedule_id, sequence,
            randomized_at, study_day, due_at, window_start, window_end, planned_amount,
            amount_unit, amount_note, status)
        SELECT al.participant_id, ds.id,
            row_number() OVER (PARTITION BY al.id, ds.id ORDER BY day::int, t),
            al.randomized_at, day::int, al.randomized_at + day::int * interval '1 day'
                + (t::time - time '00:00'),
            al.randomized_at + day::int * interval '1 day' + (t::time - time '00:00')
                - interval '2 hours',
            al.randomized_at + day::int * interval '1 day' + (t::time - time '00:00')
                + interval '2 hours',
            ds.amount, ds.amount_unit, '', 'scheduled'
        FROM {table(Allocation)} al JOIN {table(DoseSchedule)} ds ON ds.arm_id = al.arm_id
        CROSS JOIN LATERAL jsonb_array_elements_text(ds.study_days) AS day
        CROSS JOIN LATERAL jsonb_array_elements_text(ds.times) AS t
        WHERE al.participant_id BETWEEN {first} AND {last}""",
        f"""INSERT INTO {table(ScheduledVisit)} (participant_id, definition_id, study_day,
            due_on, window_start, window_end, status, stopped_reason)
        SELECT al.participant_id, vd.id, vd.study_day,
            (al.randomized_at AT TIME ZONE 'Asia/Shanghai')::date + vd.study_day,
            (al.randomized_at AT TIME ZONE 'Asia/Shanghai')::date + vd.study_day
                - vd.window_days,
            (al.randomized_at AT TIME ZONE 'Asia/Shanghai')::date + vd.study_day
                + vd.window_days,
            CASE WHEN vd.study_day <= {RECORDED_UP_TO_DAY} THEN 'done' ELSE 'due' END, ''
        FROM {table(Allocation)} al CROSS JOIN {table(VisitDefinition)} vd
        WHERE al.participant_id BETWEEN {first} AND {last}
            AND vd.protocol_id = (SELECT protocol_id FROM {table(Arm)} LIMIT 1)""",
        f"""INSERT INTO {table(VisitRecord)} ({", ".join(record_columns)})
        SELECT {", ".join(record_values)} FROM {table(ScheduledVisit)} v
        WHERE v.participant_id BETWEEN {first} AND {last}
            AND v.study_day <= {RECORDED_UP_TO_DAY}""",
    ]
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
        for model in (Participant, ListEntry, Allocation, ScheduledDose, ScheduledVisit):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table(model)}', 'id'), "
                f"(SELECT max(id) FROM {table(model)}))"
            )
        cursor.execute("ANALYZE")


def row_counts() -> dict[str, int]:
    from arms.models import Allocation
    from dosing.models import ScheduledDose
    from enrollment.models import Participant
    from outcomes.models import ScheduledVisit, VisitRecord

    return {
        "participants": Participant.objects.count(),
        "allocations": Allocation.objects.count(),
        "scheduled_doses": ScheduledDose.objects.count(),
        "visits": ScheduledVisit.objects.count(),
        "visit_records": VisitRecord.objects.count(),
    }


# --- The floor: bare COPY of the same tables ----------------------------------------------------


def bare_copy_seconds() -> float:
    from django.db import connection

    from arms.models import Allocation
    from dosing.models import ScheduledDose
    from enrollment.models import Participant
    from outcomes.models import ScheduledVisit, VisitRecord

    start = time.perf_counter()
    with open(os.devnull, "wb") as sink, connection.cursor() as cursor:
        for model in (Participant, Allocation, ScheduledDose, ScheduledVisit, VisitRecord):
            cursor.cursor.copy_expert(
                f"COPY (SELECT * FROM {model._meta.db_table}) TO STDOUT WITH CSV", sink
            )
    return time.perf_counter() - start


def projection_copy_seconds() -> float:
    """The same rows as the four datasets (their joins, their order), raw values: COPY of
    the projections' inner query, no formatting, into /dev/null."""
    from django.db import connection

    from trialsite.exports import copy_sql
    from trialsite.exports.columns import ExportOptions
    from trialsite.exports.datasets import DATASETS as ALL

    options = ExportOptions(datasets=DATASETS)
    start = time.perf_counter()
    with open(os.devnull, "wb") as sink, connection.cursor() as cursor:
        cursor.execute(f"SET work_mem TO '{copy_sql.SORT_MEMORY}'")  # as the export sorts
        for name in DATASETS:
            sql = copy_sql.select_sql(ALL[name], options, None)
            inner = sql[sql.index("FROM (") + len("FROM (") : sql.rindex(") AS q")]
            order_by = sql[sql.rindex(" ORDER BY ") :].replace("q._k", "_k")
            cursor.cursor.copy_expert(f"COPY ({inner}{order_by}) TO STDOUT WITH CSV", sink)
        cursor.execute("RESET work_mem")
    return time.perf_counter() - start


def formatted_copy_seconds() -> float:
    """The four datasets through the export's COPY path, into /dev/null: no ZIP, no hash."""
    from trialsite.exports import copy_sql
    from trialsite.exports.columns import ExportContext, ExportOptions
    from trialsite.exports.datasets import DATASETS as ALL

    context = ExportContext(ExportOptions(datasets=DATASETS))
    start = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        for name in DATASETS:
            copy_sql.copy_dataset(ALL[name], context, sink, bom=False)
    return time.perf_counter() - start


# --- The export, in a child process -------------------------------------------------------------


def child_export(out_dir: str) -> None:
    """In the child: the worker's service on a queued export; prints what it wrote."""
    setup_django()
    from django.conf import settings

    from trialsite.exports.bundle import bundle_build, export_request
    from trialsite.exports.columns import ExportOptions
    from trialsite.models import DataExport

    settings.EXPORT_ROOT = Path(out_dir)
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username="bench-dm")
    export = export_request(
        user=user, options=ExportOptions(datasets=DATASETS), enqueue=lambda pk: None
    )
    start = time.perf_counter()
    assert bundle_build(export_id=export.pk)
    seconds = time.perf_counter() - start
    export = DataExport.objects.get(pk=export.pk)
    print(json.dumps({"seconds": seconds, "bytes": export.file_bytes, "rows": export.row_counts}))


def run_child(database_url: str, out_dir: Path) -> dict:
    env = dict(os.environ, DATABASE_URL=database_url, DEBUG="1")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", str(out_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    output = proc.stdout.read().decode()
    proc.stdout.close()
    assert os.waitstatus_to_exitcode(status) == 0, output
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=100_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_export(args.child)
        return
    setup_django()
    import tempfile

    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    if connection.vendor != "postgresql":
        sys.exit("bench/export.py measures PostgreSQL's COPY: set DATABASE_URL=postgres://...")
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    url = f"postgres://{auth}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"
    try:
        cast = seed_trial()
        sizes = [args.participants // 10, args.participants]
        done = 0
        results = []
        for size in sizes:
            start = time.perf_counter()
            seed_participants(cast, done + 1, size)
            done = size
            counts = row_counts()
            seeded = time.perf_counter() - start
            print(
                f"{size:,} participants seeded in {seeded:.1f} s: "
                + ", ".join(f"{k} {v:,}" for k, v in counts.items())
            )
            floor = min(bare_copy_seconds() for _ in range(2))
            projected = min(projection_copy_seconds() for _ in range(2))
            formatted = formatted_copy_seconds()
            with tempfile.TemporaryDirectory(prefix="export-bench-") as out:
                export = run_child(url, Path(out))
            rows = sum(v for k, v in export["rows"].items() if k != "dictionary.csv")
            ratio = export["seconds"] / floor
            results.append((size, export["peak_rss_mib"]))
            print(
                f"  bare COPY of the five tables to /dev/null: {floor:6.2f} s\n"
                f"  COPY of the same rows (joins, order), raw: {projected:6.2f} s\n"
                f"  the four datasets' COPY, formatted, no ZIP: {formatted:6.2f} s\n"
                f"  the bundle (worker's service, ZIP on disk): {export['seconds']:6.2f} s, "
                f"{rows:,} rows, {export['bytes'] / 2**20:.1f} MiB\n"
                f"  ratio bundle / bare COPY: {ratio:.2f} (goal <= 2); "
                f"bundle / COPY of the same rows: {export['seconds'] / projected:.2f}\n"
                f"  peak RSS of the export process: {export['peak_rss_mib']:.1f} MiB"
            )
        (small, small_rss), (large, large_rss) = results
        print(
            f"peak memory {large:,} / {small:,} participants: "
            f"{large_rss / small_rss:.2f} (goal <= 1.2)"
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
