from django.contrib import admin

from trialsite.core.admin import AuditedAdmin

from .models import VisitDefinition


@admin.register(VisitDefinition)
class VisitDefinitionAdmin(AuditedAdmin):
    list_display = ["code", "name", "study_day", "window_days"]
