"""Every page but the login and the health check needs a logged-in user: checked on every
URL pattern the project has, so a new view cannot forget it."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

# The language box is on the login page too; choosing a language changes no trial data.
PUBLIC = {"login", "healthz", "set_language", "language_set", "logout"}
SAMPLE_ARGS = {"int": "1", "str": "SHE-0001", "path": "x", "slug": "x", "uuid": None}


def _patterns(resolver: URLResolver, prefix: str = ""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _patterns(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.name


def _sample(route: str) -> str | None:
    if route.startswith("admin/") or route.startswith("^"):
        return None  # Django's admin protects itself; regex routes are the admin's
    path = re.sub(r"<(?:(\w+):)?\w+>", lambda m: SAMPLE_ARGS.get(m.group(1) or "str") or "", route)
    return "/" + path


ROUTES = sorted(
    (route, name)
    for route, name in _patterns(get_resolver())
    if name not in PUBLIC and _sample(route) is not None
)


def test_the_project_has_pages_to_check():
    assert len(ROUTES) > 30


@pytest.mark.django_db
@pytest.mark.parametrize("route,name", ROUTES, ids=[name or route for route, name in ROUTES])
def test_an_anonymous_request_is_sent_to_the_login_page(client, route, name):
    for method in (client.get, client.post):
        response = method(_sample(route))
        assert response.status_code == 302, (method.__name__, route)
        assert response.url.startswith("/accounts/login/?next="), route


# A monitor posts their own second factor's code and password (setting up how one logs in is
# no change to the trial): tests/trialsite/test_mfa.py.
OWN_SECOND_FACTOR = "accounts/mfa/"
TRIAL_ROUTES = [(route, name) for route, name in ROUTES if not route.startswith(OWN_SECOND_FACTOR)]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "route,name", TRIAL_ROUTES, ids=[name or route for route, name in TRIAL_ROUTES]
)
def test_a_monitor_posts_nothing_anywhere(client_for, monitor, route, name):
    assert client_for(monitor).post(_sample(route)).status_code == 403, route
