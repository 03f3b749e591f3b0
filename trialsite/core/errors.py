"""The error pages of last resort: 503 while the database cannot be reached, 400 and 500
otherwise.

Rendered without the request's context: the context processors read the user and the roles
from the database, which is what may be down.
"""

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, HttpResponseServerError
from django.template.loader import render_to_string
from django.views import defaults

# Seconds a browser or a proxy should wait before asking again: a PostgreSQL restart or a
# fail-over takes about this long.
RETRY_AFTER_SECONDS = 30


def database_unreachable(exc: BaseException | None) -> bool:
    """A lost or refused connection (a restart, a fail-over, a lock timeout), raised here or
    behind another error: worth a retry, unlike a bug. Django wraps the driver's errors in
    these two."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OperationalError | InterfaceError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def unavailable() -> HttpResponse:
    response = HttpResponse(render_to_string("503.html"), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def server_error(request) -> HttpResponse:
    """handler500. Django calls it inside its `except` block, so the exception is at hand."""
    if database_unreachable(sys.exc_info()[1]):
        return unavailable()
    return HttpResponseServerError(render_to_string("500.html"))


def bad_request(request, exception) -> HttpResponse:
    """handler400. A session that could not be saved because the database went away reaches
    Django as "session interrupted" (400): it is the same outage, so the same 503."""
    if database_unreachable(exception):
        return unavailable()
    return defaults.bad_request(request, exception)
