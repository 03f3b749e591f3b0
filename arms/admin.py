from django.contrib import admin

from trialsite.core.admin import AuditedAdmin

from .models import Allocation, Arm

# The randomization lists and their entries are deliberately not in the admin: they are
# concealed, and reached only through the administrator's pages, which log every look.


@admin.register(Arm)
class ArmAdmin(AuditedAdmin):
    list_display = ["code", "name", "arm_type", "ratio"]


@admin.register(Allocation)
class AllocationAdmin(AuditedAdmin):
    """Read-only: allocations are written by the randomize service, marked in error on their
    page, and never deleted."""

    list_display = [
        "randomization_number",
        "participant",
        "site_code",
        "arm",
        "severity",
        "randomized_at",
        "status",
    ]
    list_filter = ["arm", "status", "stratum__severity", "participant__site"]
    search_fields = ["participant__study_number"]
    list_select_related = ["participant__site", "arm", "stratum"]
    list_per_page = 50

    @admin.display(description="site", ordering="participant__site__code")
    def site_code(self, obj):
        return obj.participant.site.code

    @admin.display(description="severity", ordering="stratum__severity")
    def severity(self, obj):
        return obj.stratum.severity

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
