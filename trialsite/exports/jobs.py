"""The worker's side of the export: build a bundle asked for on the page, and delete the kept
files whose time is up. Thin tasks over the services in `bundle.py`; the rows are the work,
the broker only the nudge (a queued export is nudged again by the periodic sweep)."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from trialsite.core.queue import enqueue_on_commit
from trialsite.models import DataExport, ExportStatus

from . import bundle
from .columns import ExportOptions

# A queued export older than this was not picked up (a lost message): the sweep resends it.
RESEND_AFTER = timedelta(minutes=2)


@shared_task(
    name="trialsite.exports.bundle_build",
    ignore_result=True,
    time_limit=settings.EXPORT_TASK_TIME_LIMIT,
    soft_time_limit=settings.EXPORT_TASK_TIME_LIMIT - 60,
)
def export_bundle_build(export_id: int) -> None:
    bundle.bundle_build(export_id=export_id)


@shared_task(name="trialsite.exports.sweep", ignore_result=True)
def exports_sweep() -> None:
    bundle.exports_expire()
    waiting = DataExport.objects.filter(
        status=ExportStatus.QUEUED, exported_at__lte=timezone.now() - RESEND_AFTER
    ).values_list("pk", flat=True)
    for export_id in waiting:
        export_bundle_build.delay(export_id)


def export_start(*, user, options: ExportOptions) -> DataExport:
    """The export page's request: a queued export, built by the worker once committed."""
    return bundle.export_request(
        user=user,
        options=options,
        enqueue=lambda export_id: enqueue_on_commit(export_bundle_build, export_id),
    )
