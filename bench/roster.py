"""The all-arms roster and a per-arm roster with 10,000 randomized participants, against the
Django-admin changelist of the same allocations, timed in the same run.

    DEBUG=1 .venv/bin/python bench/roster.py                 # SQLite, a throw-away database
    DEBUG=1 DATABASE_URL=postgres://USER@HOST:5432/NAME .venv/bin/python bench/roster.py

The data go into a throw-away test database (created and destroyed here, as the test runner
does), written in bulk with their history rows. Each page is requested through Django's test
client by one user who sees all sites (the trial administrator, also a superuser for the
admin); the figure is the median of REPEATS requests after one warm-up, with the number of
queries of one request. The roster shows 50 rows a page, the admin 50 (list_per_page).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django() -> None:
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trialsite.settings")
    import django

    django.setup()


def seed(participants: int):
    from django.conf import settings

    from tests.factories import (
        SiteFactory,
        active_randomization_list,
        bulk_allocated,
        user_with_role,
    )
    from trialsite.core.models import Role
    from trialsite.core.protocol import definition_from_toml
    from trialsite.core.services import protocol_load

    protocol_load(definition=definition_from_toml(settings.PROTOCOL_FILE))
    sites = [SiteFactory(code="SHE"), SiteFactory(code="WUH")]
    administrator = user_with_role(Role.ADMINISTRATOR, username="bench-admin")
    administrator.is_staff = administrator.is_superuser = True
    administrator.save()
    coordinator = user_with_role(Role.COORDINATOR, sites[0], username="bench-coordinator")
    strata = [(site, severity) for site in sites for severity in ("severe", "critical")]
    per_stratum = -(-participants // len(strata))
    randomization_list = active_randomization_list(
        administrator=administrator, per_stratum=per_stratum
    )
    for site, severity in strata:
        bulk_allocated(
            site=site,
            user=coordinator,
            randomization_list=randomization_list,
            count=per_stratum,
            severity=severity,
        )
    return administrator


def timed(client, url: str, repeats: int) -> tuple[float, int, int]:
    """Median milliseconds, queries of one request, bytes of one response."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)  # warm-up (and the session's first write)
    assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - start) * 1000)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    return statistics.median(times), len(queries), len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    setup_django()
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        start = time.perf_counter()
        administrator = seed(args.participants)
        from arms.models import Allocation, Arm

        count = Allocation.objects.count()
        print(
            f"{connection.vendor}: {count} randomized participants seeded "
            f"in {time.perf_counter() - start:.1f} s"
        )
        client = Client()
        client.force_login(administrator)
        pages = {
            "roster, all arms (/arms/roster/)": "/arms/roster/",
            "roster, arm MSC (/arms/roster/MSC/)": "/arms/roster/MSC/",
            "roster, sorted by age, page 100": "/arms/roster/?sort=age&page=100",
            "admin changelist (/admin/arms/allocation/)": "/admin/arms/allocation/",
            "admin changelist, arm MSC": (
                f"/admin/arms/allocation/?arm__id__exact={Arm.objects.get(code='MSC').pk}"
            ),
        }
        results = {}
        for label, url in pages.items():
            results[label] = timed(client, url, args.repeats)
            ms, queries, size = results[label]
            print(f"  {label:48s} {ms:8.1f} ms  {queries:3d} queries  {size // 1024:5d} KiB")
        roster = results["roster, all arms (/arms/roster/)"][0]
        admin = results["admin changelist (/admin/arms/allocation/)"][0]
        print(f"ratio roster / admin changelist: {roster / admin:.2f}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
