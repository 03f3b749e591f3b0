from django.contrib import admin

from trialsite.core.admin import AuditedAdmin

from .models import DoseSchedule


@admin.register(DoseSchedule)
class DoseScheduleAdmin(AuditedAdmin):
    list_display = ["arm", "product", "route"]
