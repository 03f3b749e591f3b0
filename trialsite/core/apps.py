from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    name = "trialsite.core"
    # The label the foundation has always had: its tables, migrations and permissions keep it.
    label = "trialsite"
    verbose_name = _("Trial site")

    def ready(self):
        from axes.signals import user_locked_out
        from django.contrib.auth.models import User
        from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
        from django.db.models.signals import post_delete, post_save, pre_delete

        from . import (
            audit,
            checks,  # noqa: F401  (registers the protocol system checks)
            sessions,
        )
        from .languages import remember_language_at_login
        from .models import RoleAssignment
        from .selectors import audited_models

        user_logged_in.connect(remember_language_at_login, dispatch_uid="trial_language")
        # Sessions and access events: whatever path logs in, deactivates or takes a role away
        # (the admin, a shell, a service), the sessions end and the audit trail knows.
        user_logged_in.connect(sessions.session_started, dispatch_uid="trial_session_start")
        user_logged_out.connect(sessions.session_finished, dispatch_uid="trial_session_end")
        user_login_failed.connect(sessions.login_failed, dispatch_uid="trial_login_failed")
        user_locked_out.connect(sessions.locked_out, dispatch_uid="trial_locked_out")
        # The audit trail: no record of trial data, nor an account, is deleted without a
        # reason; on PostgreSQL no history row is changed or deleted, by any client.
        audit.refusing_base_managers()
        for model in audited_models():
            pre_delete.connect(
                audit.deletion_reason_required,
                sender=model,
                dispatch_uid=f"trial_delete_reason_{model._meta.label_lower}",
            )
        pre_delete.connect(audit.account_never_deleted, sender=User, dispatch_uid="trial_user_kept")
        audit.protect_history_tables()
        post_save.connect(sessions.user_saved, sender=User, dispatch_uid="trial_user_saved")
        post_save.connect(
            sessions.role_assignment_changed, sender=RoleAssignment, dispatch_uid="trial_role_saved"
        )
        post_delete.connect(
            sessions.role_assignment_changed,
            sender=RoleAssignment,
            dispatch_uid="trial_role_deleted",
        )
