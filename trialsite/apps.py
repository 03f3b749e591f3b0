from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CompositionConfig(AppConfig):
    """The composition: the pages and commands that know every app (home pages, the protocol
    page, load_protocol, the demo). Installed last, after the apps it composes."""

    name = "trialsite"
    label = "composition"
    verbose_name = _("Trial site composition")
