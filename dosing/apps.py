from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DosingConfig(AppConfig):
    name = "dosing"
    verbose_name = _("Dosing")

    def ready(self):
        from trialsite.core.protocol import register_section

        from .protocol import DoseSchedulesSection

        register_section(DoseSchedulesSection())
        from . import receivers  # noqa: F401  (connects to what enrollment and arms announce)
