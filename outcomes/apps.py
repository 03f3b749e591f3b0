from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OutcomesConfig(AppConfig):
    name = "outcomes"
    verbose_name = _("Outcomes")

    def ready(self):
        from trialsite.core.protocol import register_section

        from .protocol import VisitsSection

        register_section(VisitsSection())

        from . import receivers  # noqa: F401 - connects the answers to the apps below
