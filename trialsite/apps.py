from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TrialsiteConfig(AppConfig):
    name = "trialsite"
    verbose_name = _("Trial site")

    def ready(self):
        from . import checks  # noqa: F401  (registers the protocol system checks)
