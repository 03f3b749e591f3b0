"""The Django admin, audited: every change and every delete carries its reason.

Protocol-defining rows and trial data are never deleted here: the protocol retires them
(load_protocol, an amendment), a site or an account is made inactive. What may still be
deleted (a role assignment, which is how access is taken away) asks for a reason first.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AdminDateWidget
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, UserChangeForm
from django.contrib.auth.models import Group, User
from django.http import HttpResponseRedirect
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from .accounts import expiry_of
from .forms import AdminLoginForm
from .models import (
    AccessEvent,
    AccountProfile,
    Protocol,
    RoleAssignment,
    SignatureFailure,
    Site,
    WorkerHeartbeat,
)
from .services import account_expiry_set

DELETE_REASON_REQUIRED = _("Give a reason for deleting this record.")

admin.site.login_form = AdminLoginForm


class ChangeReasonForm(forms.Form):
    """The reason field every audited admin form carries (mixed into model forms)."""

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


class AuditedAdminForm(ChangeReasonForm, forms.ModelForm):
    pass


class AuditedAdminMixin:
    """A change asks for its reason; a delete is refused unless the admin sets `deletable`,
    and then asks for its reason too. Bulk "delete selected" is never offered: each delete
    is one record with one reason."""

    delete_confirmation_template = "admin/audited_delete_confirmation.html"
    deletable = False

    def save_model(self, request, obj, form, change):
        obj._change_reason = form.cleaned_data.get("change_reason", "") or "created in admin"
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request, obj=None):
        return self.deletable and super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(self, request, object_id, extra_context=None):
        if request.method == "POST" and "post" in request.POST:
            reason = request.POST.get("change_reason", "").strip()
            if not reason:
                # Permission is checked first, so a refused delete is not told to add a reason.
                if not self.has_delete_permission(request, self.get_object(request, object_id)):
                    return super().delete_view(request, object_id, extra_context)
                self.message_user(request, DELETE_REASON_REQUIRED, messages.ERROR)
                return HttpResponseRedirect(request.get_full_path())
            request._delete_reason = reason
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj):
        obj._change_reason = request._delete_reason
        obj._history_user = request.user
        super().delete_model(request, obj)


class AuditedAdmin(AuditedAdminMixin, SimpleHistoryAdmin):
    """Admin for audited models: a change asks for its reason, and history is one click away."""

    form = AuditedAdminForm


class LogAdmin(admin.ModelAdmin):
    """A log the system writes (a heartbeat, a security log): read here, never written,
    changed or deleted by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Site)
class SiteAdmin(AuditedAdmin):
    """A site that leaves the trial is made inactive: its participants stay."""

    list_display = ["code", "name", "time_zone", "is_active"]


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(AuditedAdmin):
    """Deleting a role assignment is how access is taken away: allowed, with its reason."""

    list_display = ["user", "role", "site"]
    list_filter = ["role", "site"]
    list_select_related = ["user", "site"]
    deletable = True


@admin.register(Protocol)
class ProtocolAdmin(AuditedAdmin):
    list_display = ["code", "version", "is_current"]


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(LogAdmin):
    list_display = ["name", "last_seen"]


@admin.register(SignatureFailure)
class SignatureFailureAdmin(LogAdmin):
    list_display = ["user", "at"]
    list_select_related = ["user"]


@admin.register(AccessEvent)
class AccessEventAdmin(LogAdmin):
    list_display = ["at", "kind", "username", "client_address", "detail"]
    list_filter = ["kind"]
    search_fields = ["username"]


# --- Accounts ----------------------------------------------------------------------------------


class AuditedUserChangeForm(ChangeReasonForm, UserChangeForm):
    expires_on = forms.DateField(
        label=_("Account expires on"),
        required=False,
        widget=AdminDateWidget,
        help_text=AccountProfile._meta.get_field("expires_on").help_text,
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial.setdefault("expires_on", expiry_of(self.instance))


class AuditedPasswordChangeForm(ChangeReasonForm, AdminPasswordChangeForm):
    """A password set or disabled by an administrator is a change to the account: its reason
    is asked for (the new hash never reaches the audit trail)."""

    def __init__(self, user, *args, **kwargs):
        super().__init__(user, *args, **kwargs)
        self.instance = user

    def save(self, commit=True):
        self.user._change_reason = self.cleaned_data["change_reason"]
        return super().save(commit=commit)


class AccountAdminMixin(AuditedAdminMixin):
    """An edit to an account writes one history row, after its groups and permissions are
    saved: without this, the fields and each membership change would be separate rows."""

    def save_model(self, request, obj, form, change):
        if change:
            obj.skip_history_when_saving = True
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if change:
            del form.instance.skip_history_when_saving
            form.instance.save()


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AccountAdminMixin, UserAdmin, SimpleHistoryAdmin):
    """A person who leaves is made inactive, never deleted: their name stays on every change
    they made in the audit trail."""

    form = AuditedUserChangeForm
    change_password_form = AuditedPasswordChangeForm
    change_user_password_template = "admin/audited_change_password.html"  # noqa: S105 - a path
    fieldsets = (
        *UserAdmin.fieldsets,
        (_("Account expiry"), {"fields": ("expires_on",)}),
        (_("Audit trail"), {"fields": ("change_reason",)}),
    )
    # Written by the system; an edit through the form would only drop their microseconds,
    # a change in the audit trail that nobody made.
    readonly_fields = ["last_login", "date_joined"]

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if "expires_on" in form.cleaned_data:  # the change form, not the add form
            account_expiry_set(
                account=form.instance,
                expires_on=form.cleaned_data["expires_on"],
                user=request.user,
                reason=form.cleaned_data.get("change_reason", ""),
            )


class AuditedGroupForm(ChangeReasonForm, forms.ModelForm):
    class Meta:
        model = Group
        fields = ["name", "permissions"]


@admin.register(Group)
class AuditedGroupAdmin(AccountAdminMixin, GroupAdmin, SimpleHistoryAdmin):
    form = AuditedGroupForm
    deletable = True
