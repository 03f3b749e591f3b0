"""Headers that keep patient data off shared devices and injected code off the pages."""

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    parts = [part.split() for part in policy.split(";") if part.strip()]
    return {name: values for name, *values in parts}


def test_a_logged_in_page_is_never_stored(client_for, coordinator_a, protocol):
    response = client_for(coordinator_a).get(reverse("enrollment:participant_list"))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert "private" in response["Cache-Control"]


def test_the_login_page_is_never_stored_either(client):
    response = client.get(reverse("login"))
    assert "no-store" in response["Cache-Control"]


def test_static_files_stay_cacheable(settings):
    # WhiteNoise serves from the finders here, as it does under `make run`.
    settings.WHITENOISE_AUTOREFRESH = True
    settings.WHITENOISE_USE_FINDERS = True
    response = Client().get("/static/css/site.css")
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")
    assert "Content-Security-Policy" not in response


def test_every_page_carries_the_content_security_policy(client_for, coordinator_a, protocol):
    response = client_for(coordinator_a).get(reverse("enrollment:participant_list"))
    assert directives(response) == {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    assert "unsafe-inline" not in response["Content-Security-Policy"]
