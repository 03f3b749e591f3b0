from django.contrib import admin

from trialsite.admin import AuditedAdmin

from .models import Arm


@admin.register(Arm)
class ArmAdmin(AuditedAdmin):
    list_display = ["code", "name", "arm_type", "ratio"]
