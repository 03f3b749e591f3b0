"""The Celery app with its beat schedule shortened, for the fault drills only.

    celery -A bench.drill_beat beat

Every periodic task of `trialsite/celery.py` (the one place schedules are declared) runs every
DRILL_TICK_SECONDS (default 1) instead of every minute, so that a drill sees many ticks in a few
seconds. Same task names, same broker: the workers run the ordinary app (`-A trialsite`).
"""

import os

from trialsite.celery import app

TICK = float(os.environ.get("DRILL_TICK_SECONDS", "1"))

app.conf.beat_schedule = {
    name: {
        **entry,
        "schedule": TICK,
        "options": {**entry.get("options", {}), "expires": max(5 * TICK, 5.0)},
    }
    for name, entry in app.conf.beat_schedule.items()
}
