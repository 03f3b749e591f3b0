"""What one randomization costs, per arm: queries and time of the full allocation service in
one process, against a standard-care randomization measured in the same run (the floor: the
gate, the stratum lock, the entry, the allocation, the notice and the visit schedule, and no
dose). A Paxlovid randomization adds ten doses and their reminders; an MSC one two.

    DEBUG=1 .venv/bin/python bench/randomize_cost.py                                  # SQLite
    DEBUG=1 DATABASE_URL=postgres://USER@HOST/NAME .venv/bin/python bench/randomize_cost.py

Runs in a throw-away test database; ready participants are made beforehand and not timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django() -> None:
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trialsite.settings")
    # Enqueued notices go to a scratch broker folder, not to a running worker's queue.
    if not os.environ.get("REDIS_URL"):
        os.environ["BROKER_DIR"] = tempfile.mkdtemp(prefix="bench-broker-")
    import django

    django.setup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=90)
    args = parser.parse_args()
    setup_django()
    from django.conf import settings
    from django.db import connection, reset_queries
    from django.test.utils import (
        CaptureQueriesContext,
        setup_test_environment,
        teardown_test_environment,
    )

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
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
        site = SiteFactory(code="SHE")
        administrator = user_with_role(Role.ADMINISTRATOR, username="bench-admin")
        coordinator = user_with_role(Role.COORDINATOR, site, username="bench-coord")
        investigator = user_with_role(Role.INVESTIGATOR, site, username="bench-inv")
        active_randomization_list(administrator=administrator, per_stratum=args.participants)
        participants = [
            ready_participant(site=site, user=coordinator, investigator=investigator)
            for _ in range(args.participants)
        ]
        by_arm: dict[str, list[tuple[int, float]]] = {}
        for participant in participants:
            reset_queries()  # the query log keeps 9,000: counting starts afresh each time
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                allocation = participant_randomize(
                    participant=participant, user=coordinator, idempotency_key=uuid.uuid4()
                )
                elapsed = time.perf_counter() - start
            by_arm.setdefault(allocation.arm.code, []).append((len(queries), elapsed))

        print(f"{connection.vendor}, {args.participants} randomizations in one process")
        floor = statistics.median(t for _q, t in by_arm["STD"])
        for code in sorted(by_arm, key=lambda c: (c != "STD", c)):
            runs = by_arm[code]
            median = statistics.median(t for _q, t in runs)
            queries = statistics.median(q for q, _t in runs)
            print(
                f"  {code:4} n={len(runs):3}  queries {queries:4.0f}  "
                f"median {1000 * median:6.1f} ms  x{median / floor:4.2f} of standard care"
            )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
