"""Randomization throughput: 1 client and 8 concurrent clients (processes, each with its own
connection) in turn, over several rounds, calling `participant_randomize` on PostgreSQL, all
in one stratum (every allocation waits for the stratum lock) and spread over the four strata
of two sites (the locks rarely meet). Printed for each run: randomizations a second, the CPU
the clients and the machine used per randomization; for each layout, the rate of all rounds
and the ratio of 8 clients' rate to one client's (goal >= 1).

    DEBUG=1 DATABASE_URL=postgres://USER@HOST/NAME .venv/bin/python bench/randomize_throughput.py

Runs in a throw-away test database. Each allocation is the full service: the gate, the
stratum lock, the entry, the allocation with its history row, the notice row, and the dosing
schedule (the dosing hook); the Celery notice is enqueued on commit to the run's own
filesystem broker folder and never delivered. Ready participants are created beforehand and
not timed. At the end the one stratum is checked: each entry used once, in sequence.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
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


def _busy_core_seconds() -> float:
    """CPU time the whole machine spent busy (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = sum(int(fields[i]) for i in (0, 1, 2, 5, 6, 7))
    return ticks / os.sysconf("SC_CLK_TCK")


def run(participants, user_by_site: dict[int, int], clients: int) -> dict:
    """Wall time of `clients` processes randomizing `participants` between them, with the
    CPU the clients used (their own Python) and the CPU the machine used meanwhile (the
    clients, their PostgreSQL backends, anything else)."""
    from django.db import connections

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(clients + 1)
    failures = context.Queue()
    connections.close_all()  # never share a connection with a forked child
    processes = [
        context.Process(
            target=_client,
            args=([p.pk for p in participants[i::clients]], user_by_site, barrier, failures),
        )
        for i in range(clients)
    ]
    for process in processes:
        process.start()
    barrier.wait()
    start, busy = time.perf_counter(), _busy_core_seconds()
    for process in processes:
        process.join()
    elapsed, busy = time.perf_counter() - start, _busy_core_seconds() - busy
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not failures.empty():
        raise SystemExit(f"a client failed: {failures.get()}")
    return {
        "seconds": elapsed,
        "machine_cpu": busy,
        "children_cpu": usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime,
    }


def _load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=150, help="per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    args = parser.parse_args()
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
        # The one stratum gives 2n entries a round, then the four-strata runs take n/2 a round.
        active_randomization_list(administrator=administrator, per_stratum=3 * args.rounds * n)
        print(
            f"{connection.vendor}, {n} participants per run, {args.rounds} rounds of 1 client "
            f"then {args.clients} concurrent clients; load average before: {_load_average()}"
        )
        # Coordinator and investigator of a site randomize in turn; here one user per site.
        user_by_site = {site.pk: staff[site.code][0].pk for site in sites}

        def one_stratum() -> list:
            return [
                ready_participant(site=sites[0], user=staff["SHE"][0], investigator=staff["SHE"][1])
                for _ in range(n)
            ]

        def four_strata() -> list:
            spread = []
            for i in range(n):
                site = sites[i % 2]
                severity = ("severe", "critical")[(i // 2) % 2]
                code = site.code
                spread.append(
                    ready_participant(
                        site=site,
                        user=staff[code][0],
                        investigator=staff[code][1],
                        severity=severity,
                    )
                )
            by_site = {s.code: [p for p in spread if p.site_id == s.pk] for s in sites}
            return [p for pair in zip(by_site["SHE"], by_site["WUH"], strict=False) for p in pair]

        single = []
        for layout, make in (("one stratum (SHE-severe)", one_stratum),
                             ("four strata, two sites", four_strata)):  # fmt: skip
            # One client and many in turn, round after round: this machine's speed drifts
            # from minute to minute, and alternating lets both see the same drift.
            seconds = {1: 0.0, args.clients: 0.0}
            for round_number in range(1, args.rounds + 1):
                for clients in (1, args.clients):
                    participants = make()
                    if make is one_stratum:
                        single += participants
                    result = run(participants, user_by_site, clients)
                    seconds[clients] += result["seconds"]
                    print(
                        f"  {layout:26} round {round_number}, {clients} "
                        f"client{'s' if clients > 1 else ' '}: "
                        f"{n / result['seconds']:6.1f} randomizations/s "
                        f"({1000 * result['seconds'] / n:5.1f} ms each); CPU per "
                        f"randomization: clients {1000 * result['children_cpu'] / n:5.1f} ms, "
                        f"machine {1000 * result['machine_cpu'] / n:5.1f} ms "
                        f"({result['machine_cpu'] / result['seconds']:.2f} cores busy)",
                        flush=True,
                    )
            total = n * args.rounds
            one, many = total / seconds[1], total / seconds[args.clients]
            print(
                f"  {layout:26} all rounds: 1 client {one:.1f}/s, {args.clients} clients "
                f"{many:.1f}/s; {args.clients} clients / 1 client: {many / one:.2f} (goal >= 1)",
                flush=True,
            )
        # Every run of the one stratum drew from it: its entries 1..2n per round, each once.
        sequences = sorted(
            Allocation.objects.filter(participant__in=single).values_list(
                "entry__sequence", flat=True
            )
        )
        assert sequences == list(range(1, 2 * n * args.rounds + 1)), "entries skipped or repeated"
        print(f"load average after: {_load_average()}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
