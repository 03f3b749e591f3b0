"""What arms announces to the apps above it. Sent inside the service's transaction, so a
receiver's writes commit or roll back with it, and a receiver that raises refuses the whole
write. Receivers are connected in their app's `ready()`."""

from django.dispatch import Signal

# A participant was allocated (allocation, user): the arm's treatment starts (the dose
# schedule exists exactly when the allocation does).
participant_allocated = Signal()

# The roster asks for its clinical columns (rows: the allocations on one page). Each receiver
# answers {participant_id: {column: value}} for the columns it fills, in bulk for the page.
roster_progress = Signal()
