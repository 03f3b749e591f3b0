"""What enrollment announces to the apps above it. Each is sent by a service inside its
transaction, so a receiver's writes commit or roll back with it, and a receiver that raises
refuses the whole write. Receivers are connected in their app's `ready()`."""

from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import Model
from django.dispatch import Signal

# A withdrawal was recorded (participant, withdrawal, user): whatever is planned for the
# participant from now on (doses, reminders, visits) stops.
withdrawal_recorded = Signal()

# The participant page asks the apps above for their panels (participant, user, can_write).
# Each receiver answers a list of Panel: a template under the answering app's folder and its
# context, shown in the page's right-hand column in the order the apps are installed.
participant_panels = Signal()


@dataclass(frozen=True)
class Panel:
    template: str
    context: dict


# The participant page asks every app for its part of the participant's story (participant,
# user, can_write). Each receiver answers a list of TimelineEntry: what happened makes the
# timeline, in date order; what is planned (`due`) makes "what is due next" at the top of the
# page, linked to its form only for a user who may fill it in.
participant_timeline = Signal()


@dataclass(frozen=True)
class TimelineEntry:
    """One event of a participant's story. `at` is a date when only the day is known (a
    visit, an adverse event's onset); `order_at` then orders it within its day (when it was
    recorded); None for a planned step that is due now, whatever the date (a sign-off).
    `record` is the audited row behind it, whose history the entry links to."""

    at: datetime | date | None
    kind: str
    title: str
    detail: str = ""
    url: str = ""
    record: Model | None = None
    tone: str = "secondary"
    due: bool = False
    overdue: bool = False
    order_at: datetime | None = None

    @property
    def record_label(self) -> str:
        return self.record._meta.label_lower if self.record is not None else ""

    @property
    def has_time(self) -> bool:
        return isinstance(self.at, datetime)
