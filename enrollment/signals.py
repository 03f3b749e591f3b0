"""What enrollment announces to the apps above it. Each is sent by a service inside its
transaction, so a receiver's writes commit or roll back with it, and a receiver that raises
refuses the whole write. Receivers are connected in their app's `ready()`."""

from dataclasses import dataclass

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
