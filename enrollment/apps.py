from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EnrollmentConfig(AppConfig):
    name = "enrollment"
    verbose_name = _("Enrollment")

    def ready(self):
        from trialsite.core.protocol import register_section

        from .protocol import CriteriaSection

        register_section(CriteriaSection())
