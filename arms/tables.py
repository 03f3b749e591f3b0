"""The arm roster as a django-tables2 table; its CSV is the same table's values."""

from collections.abc import Callable

import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from enrollment.rules import whole_years
from trialsite.core.clock import site_date, site_time_text, site_today, utc_iso

from .models import Allocation, AllocationStatus
from .selectors import ClinicalProgress

EMPTY = ClinicalProgress()
# Columns left out on a tablet held upright: the study number, arm, study day, dosing and
# status stay.
SECONDARY = {"th": {"class": "col-secondary"}, "td": {"class": "col-secondary"}}
# Sorting on a column with equal values still gives one order: the page and the CSV agree.
TIEBREAK = "participant__study_number"


class RosterTable(tables.Table):
    study_number = tables.Column(
        accessor="participant__study_number",
        verbose_name=_("Study number"),
        order_by=("participant__study_number",),
    )
    site = tables.Column(
        accessor="participant__site__code",
        verbose_name=_("Site"),
        order_by=("participant__site__code", TIEBREAK),
        attrs=SECONDARY,
    )
    arm = tables.Column(
        accessor="arm__code", verbose_name=_("Arm"), order_by=("arm__code", TIEBREAK)
    )
    age = tables.Column(
        accessor="participant__date_of_birth",
        verbose_name=_("Age"),
        order_by=("-participant__date_of_birth", TIEBREAK),
        attrs=SECONDARY,
    )
    sex = tables.Column(
        accessor="participant__sex",
        verbose_name=_("Sex"),
        order_by=("participant__sex", TIEBREAK),
        attrs=SECONDARY,
    )
    severity = tables.Column(
        accessor="stratum__severity",
        verbose_name=_("Severity"),
        order_by=("stratum__severity", TIEBREAK),
        attrs=SECONDARY,
    )
    randomized = tables.Column(
        accessor="randomized_at",
        verbose_name=_("Randomized"),
        order_by=("randomized_at", TIEBREAK),
        attrs=SECONDARY,
    )
    # Pages show site time with its offset; the CSV carries UTC and names the site's zone in
    # this column, so that rows of sites in different zones compare.
    time_zone = tables.Column(
        accessor="participant__site__time_zone",
        verbose_name=_("Site time zone"),
        visible=False,
        orderable=False,
    )
    study_day = tables.Column(
        accessor="randomized_at",
        verbose_name=_("Study day"),
        order_by=("-randomized_at", "-" + TIEBREAK),
    )
    # From selectors.roster_clinical_progress: dosing now; the WHO score and open adverse
    # events when the outcomes issue fills them. Empty (not a placeholder) until then.
    dosing_progress = tables.Column(
        accessor="pk", verbose_name=_("Dosing"), orderable=False, default=""
    )
    next_due = tables.Column(
        accessor="pk", verbose_name=_("Next due"), orderable=False, default="", attrs=SECONDARY
    )
    latest_who_score = tables.Column(
        accessor="pk", verbose_name=_("WHO score"), orderable=False, default="", attrs=SECONDARY
    )
    open_adverse_events = tables.Column(
        accessor="pk", verbose_name=_("Open AEs"), orderable=False, default="", attrs=SECONDARY
    )
    status = tables.Column(
        accessor="status", verbose_name=_("Status"), order_by=("status", TIEBREAK)
    )

    class Meta:
        model = Allocation
        fields = ()
        sequence = (
            "study_number",
            "site",
            "arm",
            "age",
            "sex",
            "severity",
            "randomized",
            "time_zone",
            "study_day",
            "dosing_progress",
            "next_due",
            "latest_who_score",
            "open_adverse_events",
            "status",
        )
        # One card per participant on a phone; on a tablet the secondary columns step aside.
        attrs = {"class": "table table-sm table-striped table-stack", "data-testid": "roster"}
        row_attrs = {"data-study-number": lambda record: record.participant.study_number}
        order_by = ("-randomized",)
        empty_text = _("Nobody is randomized here yet.")

    def __init__(self, *args, progress=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.progress: dict[int, ClinicalProgress] = progress or {}

    def page_rows(self) -> list[tuple[str, str, list[tuple[str, str, object]]]]:
        """The page's rows as _roster_table.html shows them: (study number, even/odd, cells),
        a cell being (its td attributes, its column's header, its value). Each value comes from
        its column's render method, called directly: django-tables2's own rows (`row.items`)
        look up each cell's method and its signature per cell, which took longer than the
        rest of the page (docs/benchmarks.md)."""
        columns = [
            (column.attrs["td"].as_html(), str(column.header), self._cell_value(column))
            for column in self.columns
        ]
        return [
            (
                record.participant.study_number,
                "odd" if index % 2 else "even",
                [(td, header, value(record)) for td, header, value in columns],
            )
            for index, record in enumerate(self.page.object_list.data)
        ]

    def _cell_value(self, column) -> Callable:
        """The column's render method (each takes the record and shows its own empty value),
        or else its accessor's value, its default when empty, as django-tables2 shows it."""
        render = getattr(self, f"render_{column.name}", None)
        if render is not None:
            return render
        accessor, default, empty = column.accessor, column.default, column.column.empty_values

        def value(record):
            resolved = accessor.resolve(record, quiet=True)
            return default if resolved in empty else resolved

        return value

    def render_study_number(self, record):
        study_number = record.participant.study_number
        url = reverse("arms:allocation_detail", args=[study_number])
        return format_html('<a href="{}">{}</a>', url, study_number)

    def _progress(self, record) -> ClinicalProgress:
        return self.progress.get(record.participant_id, EMPTY)

    def _day_zero(self, record):
        return site_date(record.randomized_at, record.participant.site)

    def render_age(self, record):
        return whole_years(record.participant.date_of_birth, self._day_zero(record))

    def render_sex(self, record):
        return record.participant.get_sex_display()

    def render_randomized(self, record):
        return site_time_text(record.randomized_at, record.participant.site)

    def value_randomized(self, record):
        return utc_iso(record.randomized_at)

    def render_study_day(self, record):
        today = site_today(record.participant.site)
        return (today - self._day_zero(record)).days

    def render_dosing_progress(self, record):
        return self._progress(record).dosing_progress

    def render_next_due(self, record):
        return self._next_due(
            record, site_time_text(self._progress(record).next_due_at, record.participant.site)
        )

    def value_next_due(self, record):
        return self._next_due(record, utc_iso(self._progress(record).next_due_at))

    def _next_due(self, record, when: str) -> str:
        if when and self._progress(record).next_due_overdue:
            return str(_("overdue since %(when)s") % {"when": when})
        return when

    def render_latest_who_score(self, record):
        return self._progress(record).latest_who_score

    def render_open_adverse_events(self, record):
        return self._progress(record).open_adverse_events

    def render_status(self, record):
        if record.status == AllocationStatus.IN_ERROR:
            return format_html('<span class="badge text-bg-danger">{}</span>', _("In error"))
        if record.withdrawn:
            return _("Withdrawn")
        return _("On study")

    def value_status(self, record):
        if record.status == AllocationStatus.IN_ERROR:
            return str(_("In error"))
        return str(_("Withdrawn")) if record.withdrawn else str(_("On study"))

    def value_study_number(self, record):
        return record.participant.study_number
