"""The screening log's filters: site, decision, and a failed criterion (the reason)."""

import django_filters
from django.utils.translation import gettext_lazy as _

from trialsite.core.access import sites_for_user

from .models import Decision, EligibilityCriterion, Screening


def _user_sites(request):
    return sites_for_user(request.user)


class ScreeningLogFilter(django_filters.FilterSet):
    site = django_filters.ModelChoiceFilter(
        field_name="participant__site", queryset=_user_sites, label=_("Site")
    )
    decision = django_filters.ChoiceFilter(choices=Decision.choices, label=_("Decision"))
    reason = django_filters.ChoiceFilter(
        choices=[], method="filter_reason", label=_("Failed criterion")
    )

    class Meta:
        model = Screening
        fields = ["site", "decision", "reason"]

    def __init__(self, *args, protocol, **kwargs):
        super().__init__(*args, **kwargs)
        codes = EligibilityCriterion.objects.filter(protocol=protocol).values_list("code", "text")
        self.filters["reason"].extra["choices"] = [
            (code, f"{code} · {text[:50]}") for code, text in codes
        ]

    def filter_reason(self, queryset, name, value):
        # `failures` maps each failed criterion's code to its reason.
        return queryset.filter(failures__has_key=value)
