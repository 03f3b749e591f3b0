"""What dosing announces to the apps above it. Receivers are connected in their app's
`ready()`."""

from django.dispatch import Signal

# The reminders page asks the apps above for their own messages (user, site_code,
# study_number, the filters of the page). Each receiver answers a list of enrollment's Panel,
# shown above the dose reminders: the serious-adverse-event alerts, say.
reminder_sections = Signal()
