from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from .models import Protocol, RoleAssignment, SignatureFailure, Site, WorkerHeartbeat


class AuditedAdminForm(forms.ModelForm):
    change_reason = forms.CharField(
        label=_("Reason for the change"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Required when changing an existing record; kept in the audit trail."),
    )

    def clean_change_reason(self):
        reason = self.cleaned_data["change_reason"].strip()
        if self.instance.pk and not reason:
            raise forms.ValidationError(_("Give a reason for changing this record."))
        return reason


class AuditedAdmin(SimpleHistoryAdmin):
    """Admin for audited models: a change asks for its reason, and history is one click away."""

    form = AuditedAdminForm

    def save_model(self, request, obj, form, change):
        obj._change_reason = form.cleaned_data.get("change_reason", "") or "created in admin"
        super().save_model(request, obj, form, change)


@admin.register(Site)
class SiteAdmin(AuditedAdmin):
    list_display = ["code", "name", "time_zone", "is_active"]


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(AuditedAdmin):
    list_display = ["user", "role", "site"]
    list_filter = ["role", "site"]
    list_select_related = ["user", "site"]


@admin.register(Protocol)
class ProtocolAdmin(AuditedAdmin):
    list_display = ["code", "version", "is_current"]


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["name", "last_seen"]


@admin.register(SignatureFailure)
class SignatureFailureAdmin(admin.ModelAdmin):
    """A security log: read here, never written or changed by hand."""

    list_display = ["user", "at"]
    list_select_related = ["user"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
