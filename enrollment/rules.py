"""Eligibility rules: how each kind of criterion is decided. Pure functions, no database."""

# The rule names a protocol's criteria may use. A criterion naming any other rule is a
# protocol error (system check trialsite.E003).
KNOWN_RULES = frozenset(
    {
        "age_range",
        "diagnosis_window",
        "bmi_range",
        "informed_consent",
        "yes_no",
        "serious_complications",
    }
)
