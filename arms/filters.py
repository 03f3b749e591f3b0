import django_filters
from django.utils.translation import gettext_lazy as _

from trialsite.core.access import sites_for_user
from trialsite.core.models import Protocol

from .models import Allocation, Arm
from .selectors import RosterStatus, roster_with_status

STATUS_CHOICES = [
    (RosterStatus.ON_STUDY, _("On study")),
    (RosterStatus.WITHDRAWN, _("Withdrawn")),
    (RosterStatus.IN_ERROR, _("Randomized in error")),
]


class RosterFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        field_name="participant__study_number", lookup_expr="icontains", label=_("Study number")
    )
    site = django_filters.ModelChoiceFilter(
        field_name="participant__site", queryset=None, label=_("Site"), to_field_name="code"
    )
    arm = django_filters.ModelChoiceFilter(queryset=None, label=_("Arm"), to_field_name="code")
    severity = django_filters.ChoiceFilter(
        field_name="stratum__severity", choices=[], label=_("Stratum (severity)")
    )
    status = django_filters.ChoiceFilter(
        choices=STATUS_CHOICES, method="filter_status", label=_("Status")
    )

    class Meta:
        model = Allocation
        fields = ["q", "site", "arm", "severity", "status"]

    def __init__(self, *args, user, protocol: Protocol, fixed_arm: Arm | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["site"].queryset = sites_for_user(user)
        self.filters["arm"].queryset = Arm.objects.filter(protocol=protocol)
        self.filters["severity"].extra["choices"] = [(s, s) for s in protocol.severity_strata]
        if fixed_arm is not None:
            del self.filters["arm"]

    def filter_status(self, queryset, name, value):
        return roster_with_status(queryset, value)
