"""The Celery app. Periodic schedules are declared here, in one place."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trialsite.settings")

app = Celery("trialsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic tasks, all of them. Later issues add the reminder dispatcher here.
app.conf.beat_schedule = {
    "heartbeat": {"task": "trialsite.core.tasks.heartbeat", "schedule": 60.0},
    "allocation-notices": {
        "task": "arms.tasks.allocation_notices_sweep",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "signoff-notices": {
        "task": "enrollment.tasks.signoff_notices_sweep",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "dosing-reminders": {
        "task": "dosing.tasks.reminders_dispatch",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "outcomes-visits": {
        "task": "outcomes.tasks.visits_sweep",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "outcomes-sae-alerts": {
        "task": "outcomes.tasks.sae_alerts_dispatch",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "exports-sweep": {
        "task": "trialsite.exports.sweep",
        "schedule": 300.0,
        "options": {"expires": 290},
    },
}


@app.on_after_configure.connect
def _make_broker_folders(sender, **kwargs):
    """kombu's filesystem transport expects its folders to exist."""
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if options.get(key):
            os.makedirs(options[key], exist_ok=True)
