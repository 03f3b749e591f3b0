"""Randomization throughput: 8 concurrent clients (processes, each with its own connection)
calling `participant_randomize` on PostgreSQL, all in one stratum (every allocation waits for
the stratum lock) and spread over the four strata of two sites (the locks rarely meet).

    DEBUG=1 DATABASE_URL=postgres://USER@HOST/NAME .venv/bin/python bench/randomize_throughput.py

Runs in a throw-away test database. Each allocation is the full service: the gate, the
stratum lock, the entry, the allocation with its history row, the notice row, and the dosing
schedule (the dosing hook); the Celery notice is enqueued on commit to the run's own
filesystem broker folder and never delivered. Ready participants are created beforehand and
not timed. After each run the stratum is checked: entries used 1..N, none twice.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CLIENTS = 8


def setup_django() -> None:
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trialsite.settings")
    # Enqueued notices go to a scratch broker folder, not to a running worker's queue.
    if not os.environ.get("REDIS_URL"):
        os.environ["BROKER_DIR"] = tempfile.mkdtemp(prefix="bench-broker-")
    import django

    django.setup()


def _client(participant_ids, user_by_site, barrier, failures) -> None:
    """One client: its own process (its own interpreter lock) and its own connection, as one
    gunicorn worker would be."""
    from django.contrib.auth.models import User
    from django.db import connections

    from arms import services
    from enrollment.models import Participant

    try:
        users = {site: User.objects.get(pk=pk) for site, pk in user_by_site.items()}
        participants = list(
            Participant.objects.select_related("site").filter(pk__in=participant_ids)
        )
        barrier.wait()
        for participant in participants:
            services.participant_randomize(
                participant=participant,
                user=users[participant.site_id],
                idempotency_key=uuid.uuid4(),
            )
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        failures.put(repr(exc))
    finally:
        connections.close_all()


def run(participants, user_by_site: dict[int, int]) -> float:
    from django.db import connections

    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(CLIENTS + 1)
    failures = context.Queue()
    connections.close_all()  # never share a connection with a forked child
    processes = [
        context.Process(
            target=_client,
            args=([p.pk for p in participants[i::CLIENTS]], user_by_site, barrier, failures),
        )
        for i in range(CLIENTS)
    ]
    for process in processes:
        process.start()
    barrier.wait()
    start = time.perf_counter()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - start
    if not failures.empty():
        raise SystemExit(f"a client failed: {failures.get()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=400)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    args = parser.parse_args()
    globals()["CLIENTS"] = args.clients
    setup_django()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    if connection.vendor != "postgresql":
        raise SystemExit("Set DATABASE_URL=postgres://...: this benchmark is for PostgreSQL.")
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from arms.models import Allocation
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
        sites = [SiteFactory(code="SHE"), SiteFactory(code="WUH")]
        administrator = user_with_role(Role.ADMINISTRATOR, username="bench-admin")
        staff = {
            site.code: [
                user_with_role(Role.COORDINATOR, site, username=f"coord-{site.code}"),
                user_with_role(Role.INVESTIGATOR, site, username=f"inv-{site.code}"),
            ]
            for site in sites
        }
        n = args.participants
        active_randomization_list(administrator=administrator, per_stratum=2 * n)
        print(f"{connection.vendor}, {CLIENTS} concurrent clients, {n} participants per run")

        one = [
            ready_participant(site=sites[0], user=staff["SHE"][0], investigator=staff["SHE"][1])
            for _ in range(n)
        ]
        # Coordinator and investigator of a site randomize in turn; here one user per site.
        user_by_site = {site.pk: staff[site.code][0].pk for site in sites}
        seconds = run(one, user_by_site)
        sequences = sorted(
            Allocation.objects.filter(participant__in=one).values_list("entry__sequence", flat=True)
        )
        assert sequences == list(range(1, n + 1)), "entries skipped or repeated"
        print(
            f"  one stratum (SHE-severe):  {n / seconds:7.1f} randomizations/s "
            f"({seconds:.2f} s, {1000 * seconds / n:.1f} ms each)"
        )

        spread = []
        for i in range(n):
            site = sites[i % 2]
            severity = ("severe", "critical")[(i // 2) % 2]
            code = site.code
            spread.append(
                ready_participant(
                    site=site, user=staff[code][0], investigator=staff[code][1], severity=severity
                )
            )
        by_site = {s.code: [p for p in spread if p.site_id == s.pk] for s in sites}
        interleaved = [
            p for pair in zip(by_site["SHE"], by_site["WUH"], strict=False) for p in pair
        ]
        seconds = run(interleaved, user_by_site)
        print(
            f"  four strata, two sites:    {n / seconds:7.1f} randomizations/s "
            f"({seconds:.2f} s, {1000 * seconds / n:.1f} ms each)"
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
