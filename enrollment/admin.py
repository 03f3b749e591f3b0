from django.contrib import admin

from trialsite.core.admin import AuditedAdmin

from .models import EligibilityCriterion


@admin.register(EligibilityCriterion)
class EligibilityCriterionAdmin(AuditedAdmin):
    list_display = ["code", "kind", "rule"]
