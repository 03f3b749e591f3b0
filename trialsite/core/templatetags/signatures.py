"""`{% load signatures %}`: an electronic signature's manifestation, as every page shows it.

`{% signature record %}` prints the printed name, the UTC time and the meaning of the record's
signature and whether it still holds (a fresh hash of what it signed against the stored one),
with any earlier signature it replaced.
"""

from datetime import datetime

from django import template

from trialsite.core.signatures import SignatureStatus, signature_state

register = template.Library()


@register.inclusion_tag("_signature.html")
def signature(record, label=""):
    state = signature_state(record)
    earlier = [
        {
            **entry,
            "signed_at": _moment(entry.get("signed_at")),
            "invalidated_at": _moment(entry.get("invalidated_at")),
        }
        for entry in (getattr(record, "earlier_signatures", None) or [])
    ]
    return {
        "record": record,
        "label": label,
        "state": state,
        "signed": state != SignatureStatus.UNSIGNED,
        "valid": state == SignatureStatus.VALID,
        # Empty when the change was made by no service (its stored status still says valid).
        "reason": getattr(record, "invalidated_reason", "") if record is not None else "",
        "earlier": earlier,
    }


def _moment(text):
    try:
        return datetime.fromisoformat(text) if text else None
    except (TypeError, ValueError):
        return None
