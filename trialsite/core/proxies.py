"""The client's address when the app stands behind reverse proxies (a TLS proxy in production).

Each proxy appends the address it received the request from to X-Forwarded-For, so with N
trusted proxies the client is the N-th entry from the right. Entries further left were written
by the client itself and prove nothing; with no trusted proxy the header is ignored entirely.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    count = settings.TRUSTED_PROXY_COUNT
    if count > 0:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        # Fewer hops than proxies: the request did not come through all of them.
        if len(hops) >= count:
            return hops[-count]
    return request.META.get("REMOTE_ADDR") or None
