"""Adverse-event test helpers: a participant randomized to a chosen arm through the real
allocation service (doses, reminders and visits with it), at a pinned instant."""

import datetime
import uuid

import time_machine

from arms.models import ListStatus, RandomizationList
from arms.services import participant_randomize
from tests.factories import active_randomization_list, ready_participant


def site_time(site, *parts) -> datetime.datetime:
    return datetime.datetime(*parts, tzinfo=site.zone)


def randomized_to(arm_code, *, site, coordinator, investigator, administrator, at):
    """Participants are randomized in the list's order until one lands in `arm_code` (a block
    holds every arm, so a few at most); that one's allocation is returned."""
    with time_machine.travel(at - datetime.timedelta(hours=3), tick=False):
        if not RandomizationList.objects.filter(status=ListStatus.ACTIVE).exists():
            active_randomization_list(administrator=administrator, per_stratum=30, seed=11)
    for _attempt in range(12):
        with time_machine.travel(at - datetime.timedelta(hours=3), tick=False):
            participant = ready_participant(site=site, user=coordinator, investigator=investigator)
        with time_machine.travel(at, tick=False):
            allocation = participant_randomize(
                participant=participant, user=coordinator, idempotency_key=uuid.uuid4()
            )
        if allocation.arm.code == arm_code:
            return allocation
    raise AssertionError(f"no allocation to {arm_code} in twelve tries")
