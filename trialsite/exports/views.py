from django.core.exceptions import PermissionDenied
from django.http import FileResponse
from django.shortcuts import render

from trialsite.core.access import access_for, role_required, sites_for_user
from trialsite.core.models import Role

from .bundle import bundle_zip, recent_exports
from .datasets import DATASETS
from .forms import ExportForm

EXPORTERS = (Role.DATA_MANAGER, Role.ADMINISTRATOR)


@role_required(*EXPORTERS)
def export_bundle(request):
    """GET: what to export; POST: the ZIP, streamed from a temporary file."""
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
        archive, filename = bundle_zip(options=options, user=request.user)
        return FileResponse(
            archive, as_attachment=True, filename=filename, content_type="application/zip"
        )
    context = {
        "form": form,
        "datasets": list(DATASETS.values()),
        "recent_exports": recent_exports(),
    }
    return render(request, "trialsite/export_form.html", context)
