"""Generating a randomization list of 10,000 entries per stratum (4 strata: 2 sites x 2
severities), against a plain bulk insert of the same number of rows, timed in the same run.

    DEBUG=1 .venv/bin/python bench/list_generation.py                 # SQLite
    DEBUG=1 DATABASE_URL=postgres://USER@HOST:5432/NAME .venv/bin/python bench/list_generation.py

Runs in a throw-away test database. Three figures, each the median of REPEATS runs:

- generate: `randomization_list_generate` as the lists page calls it (the permuted blocks
  from the cryptographic source, the list, its strata, the entries, the audit event);
- upload: `randomization_list_upload` of the same list as a statistician's CSV (parsing and
  the block checks included);
- page: the same through the lists page, as the administrator waits for it: the POST of
  the Generate box and the draft's page it redirects to (its report reads every entry);
- floor: `ListEntry.objects.bulk_create` of as many rows in one transaction, nothing else
  (the strata made beforehand, untimed): what writing the rows costs on this database.

Each run also prints its number of queries, and the ratio of each figure to the floor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django() -> None:
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trialsite.settings")
    import django

    django.setup()


def seed():
    from django.conf import settings

    from tests.factories import SiteFactory, user_with_role
    from trialsite.core.models import Role
    from trialsite.core.protocol import definition_from_toml
    from trialsite.core.services import protocol_load

    protocol = protocol_load(definition=definition_from_toml(settings.PROTOCOL_FILE))
    SiteFactory(code="SHE")
    SiteFactory(code="WUH")
    return protocol, user_with_role(Role.ADMINISTRATOR, username="bench-admin")


def timed(function, **arguments) -> tuple[float, int, object]:
    """Seconds and queries of one call, and what it returned."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        start = time.perf_counter()
        result = function(**arguments)
        seconds = time.perf_counter() - start
    return seconds, len(queries), result


def floor_insert(*, protocol, user, entries) -> Callable[[], None]:
    """The same rows, written by a bare bulk_create in one transaction: no blocks drawn, no
    checks, no audit. The list and its strata are made beforehand and not timed."""
    from django.db import transaction

    from arms.models import Arm, ListEntry, ListSource, RandomizationList, Stratum
    from arms.services import LIST_ENTRIES_UNAUDITED
    from trialsite.core.audit import unaudited_bulk_writes

    target = RandomizationList.objects.create(
        protocol=protocol, source=ListSource.UPLOADED, created_by=user
    )
    strata = {
        code: Stratum.objects.create(randomization_list=target, code=code, severity=code).pk
        for code in sorted({e.stratum for e in entries})
    }
    arms = dict(Arm.objects.filter(protocol=protocol).values_list("code", "pk"))

    def insert():
        with transaction.atomic(), unaudited_bulk_writes(LIST_ENTRIES_UNAUDITED):
            ListEntry.objects.bulk_create(
                [
                    ListEntry(
                        stratum_id=strata[e.stratum],
                        sequence=e.sequence,
                        arm_id=arms[e.arm],
                        block=e.block,
                        block_size=e.block_size,
                    )
                    for e in entries
                ],
                batch_size=1000,
            )

    return insert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-stratum", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    setup_django()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment, teardown_test_environment
    from django.urls import reverse

    setup_test_environment()
    settings.DEBUG = True  # the query counts
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from arms import rules, selectors, services
        from arms.models import ListEntry

        protocol, administrator = seed()
        client = Client()
        client.force_login(administrator)
        figures: dict[str, list[tuple[float, int]]] = {
            "generate": [],
            "upload": [],
            "page": [],
            "floor": [],
        }
        for _ in range(args.repeats):
            seconds, queries, generated = timed(
                services.randomization_list_generate,
                user=administrator,
                per_stratum=args.per_stratum,
            )
            figures["generate"].append((seconds, queries))
            entries = selectors.list_entries(generated)
            seconds, queries, _ = timed(
                services.randomization_list_upload,
                user=administrator,
                csv_text=rules.canonical_text(entries),
            )
            figures["upload"].append((seconds, queries))
            seconds, queries, response = timed(
                client.post,
                path=reverse("arms:list_generate"),
                data={"per_stratum": args.per_stratum, "idempotency_key": uuid.uuid4()},
                follow=True,
            )
            assert response.redirect_chain and response.status_code == 200, response.status_code
            figures["page"].append((seconds, queries))
            insert = floor_insert(protocol=protocol, user=administrator, entries=entries)
            seconds, queries, _ = timed(insert)
            figures["floor"].append((seconds, queries))
        rows = len(entries)
        print(
            f"{connection.vendor}: {rows:,} entries per list "
            f"({args.per_stratum:,} asked per stratum, 4 strata), median of {args.repeats}; "
            f"{ListEntry.objects.count():,} entries stored in all"
        )
        floor = statistics.median(s for s, _ in figures["floor"])
        for label, runs in figures.items():
            seconds = statistics.median(s for s, _ in runs)
            queries = max(q for _, q in runs)
            print(
                f"  {label:10s} {seconds:7.2f} s  {queries:4d} queries  "
                f"{rows / seconds:9,.0f} rows/s  ratio to floor {seconds / floor:5.2f}"
            )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
