from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    name = "trialsite.core"
    # The label the foundation has always had: its tables, migrations and permissions keep it.
    label = "trialsite"
    verbose_name = _("Trial site")

    def ready(self):
        from . import checks  # noqa: F401  (registers the protocol system checks)
