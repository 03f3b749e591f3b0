"""System checks: the loaded protocol must be runnable, or the project says so at start-up."""

from django.core import checks
from django.db import DatabaseError


@checks.register("protocol")
def check_current_protocol(app_configs=None, **kwargs):
    from .models import Protocol
    from .protocol import definition_from_db, protocol_problems

    try:
        protocol = Protocol.objects.filter(is_current=True).first()
    except DatabaseError:
        # Not migrated yet (first `migrate`, or `check --deploy` on an empty database).
        return []
    if protocol is None:
        return []
    return [
        checks.Error(p.msg, hint=p.hint or None, obj=str(protocol), id=p.id)
        for p in protocol_problems(definition_from_db(protocol))
    ]
