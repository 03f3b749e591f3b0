from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    name = "trialsite.core"
    # The label the foundation has always had: its tables, migrations and permissions keep it.
    label = "trialsite"
    verbose_name = _("Trial site")

    def ready(self):
        from django.contrib.auth.signals import user_logged_in

        from . import checks  # noqa: F401  (registers the protocol system checks)
        from .languages import remember_language_at_login

        user_logged_in.connect(remember_language_at_login, dispatch_uid="trial_language")
