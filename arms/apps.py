from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ArmsConfig(AppConfig):
    name = "arms"
    verbose_name = _("Arms")

    def ready(self):
        from trialsite.core.protocol import register_section

        from .protocol import ArmsSection

        register_section(ArmsSection())
        from . import receivers  # noqa: F401  (answers what enrollment announces)
