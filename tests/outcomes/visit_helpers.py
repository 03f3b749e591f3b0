"""Visit test helpers: participants randomized through the real service at a pinned instant."""

import datetime
import uuid

import time_machine

from arms.services import participant_randomize
from tests.factories import active_randomization_list, ready_participant


def site_time(site, *parts) -> datetime.datetime:
    return datetime.datetime(*parts, tzinfo=site.zone)


def randomized(*, site, coordinator, investigator, administrator, at: datetime.datetime):
    """A participant randomized at `at` by the allocation service (doses and visits with it)."""
    with time_machine.travel(at - datetime.timedelta(hours=3), tick=False):
        active_randomization_list(administrator=administrator, per_stratum=20, seed=7)
        participant = ready_participant(site=site, user=coordinator, investigator=investigator)
    with time_machine.travel(at, tick=False):
        return participant_randomize(
            participant=participant, user=coordinator, idempotency_key=uuid.uuid4()
        )
