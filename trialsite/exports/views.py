from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from trialsite.core.access import access_for, role_required, sites_for_user
from trialsite.core.clock import utc_iso
from trialsite.core.models import Role
from trialsite.models import DataExport, ExportProgress, ExportStatus

from .bundle import export_download, export_for_user, recent_exports
from .datasets import DATASETS
from .forms import ExportForm
from .jobs import export_start

EXPORTERS = (Role.DATA_MANAGER, Role.ADMINISTRATOR)
# The page asks again this often while the worker writes the bundle.
REFRESH_SECONDS = 2


@role_required(*EXPORTERS)
def export_bundle(request):
    """GET: what to export; POST: the export handed to the worker, then its own page."""
    access = access_for(request.user)
    may_identify = access.has(Role.ADMINISTRATOR)
    if request.method == "POST" and request.POST.get("identified") and not may_identify:
        raise PermissionDenied
    form = ExportForm(
        request.POST or None,
        sites=sites_for_user(request.user, *EXPORTERS),
        may_identify=may_identify,
    )
    if request.method == "POST" and form.is_valid():
        options = form.options(site_ids=access.site_ids(*EXPORTERS), include_concealed=may_identify)
        export = export_start(options=options, user=request.user)
        return redirect("exports:detail", pk=export.pk)
    context = {
        "form": form,
        "datasets": list(DATASETS.values()),
        "recent_exports": recent_exports(),
        "may_see_all": may_identify,
    }
    return render(request, "trialsite/export_form.html", context)


def _own_export(request, pk) -> DataExport:
    try:
        return export_for_user(request.user, pk)
    except DataExport.DoesNotExist as exc:
        raise Http404(_("No such export.")) from exc


@role_required(*EXPORTERS)
def export_detail(request, pk):
    """Where the worker stands with one export; the download once it is written."""
    export = _own_export(request, pk)
    waiting = export.status in (ExportStatus.QUEUED, ExportStatus.RUNNING)
    progress = ExportProgress.objects.filter(export=export).first() or ExportProgress()
    context = {
        "export": export,
        "progress": progress,
        "waiting": waiting,
        "refresh_seconds": REFRESH_SECONDS,
        "percent": (
            100 * progress.datasets_done // export.datasets_total if export.datasets_total else 0
        ),
        "exported_at_utc": utc_iso(export.exported_at),
        "expires_at_utc": utc_iso(export.expires_at) if export.expires_at else "",
        "ready": export.status == ExportStatus.DONE,
    }
    return render(request, "trialsite/export_detail.html", context)


@role_required(*EXPORTERS)
def export_file(request, pk):
    """The kept ZIP, to the user who asked for it, each download in the audit trail."""
    export = _own_export(request, pk)
    try:
        stream = export_download(export=export, user=request.user)
    except DataExport.DoesNotExist as exc:
        raise Http404(_("This export's file is not available.")) from exc
    name = export.file_name.split("-", 1)[1]
    return FileResponse(stream, as_attachment=True, filename=name, content_type="application/zip")
