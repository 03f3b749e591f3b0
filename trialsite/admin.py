from django.contrib import admin

from trialsite.core.admin import LogAdmin

from .models import DataExport


@admin.register(DataExport)
class DataExportAdmin(LogAdmin):
    """The record of each export: read here, never written, changed or deleted by hand."""

    list_display = ["exported_at", "exported_by", "source", "identified", "protocol_version"]
    list_filter = ["identified", "source"]
    list_select_related = ["exported_by"]
