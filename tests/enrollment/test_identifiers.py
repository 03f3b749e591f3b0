"""A participant's name and MRN appear only on their own site's participant page: not on any
other page, not in a log line, not in an email."""

import logging
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from tests.enrollment.conftest import MRN, NAME, eligible_post
from tests.factories import PASSWORD

LAR_NAME = "Zhang Min"
IDENTIFIERS = (NAME, MRN, LAR_NAME)


@pytest.fixture
def enrolled(
    client_for, coordinator_a, coordinator_b, investigator_a, site_a, consent_version, caplog
):
    """The whole enrollment through the pages, with every log record captured, including
    each SQL statement and its parameters (so identifiers must reach the database encrypted)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django")
    connection.force_debug_cursor = True
    try:
        client = client_for(coordinator_a)
        registration = {
            "site": site_a.pk,
            "name": NAME,
            "mrn": MRN,
            "sex": "F",
            "date_of_birth": "1970-05-01",
            "contact": "",
        }
        client.post(reverse("enrollment:participant_register"), registration)
        client.post(reverse("enrollment:participant_register"), registration)  # duplicate MRN
        base = "/participants/SHE-0001/"
        client.post(base + "screen/", eligible_post(site_a))
        consented = timezone.localtime(timezone.now() - timedelta(minutes=5), site_a.zone)
        client.post(
            base + "consent/",
            {
                "submission_token": "5b0c1d7e-2222-4a4a-9b9b-000000000009",
                "version": consent_version.pk,
                "consented_at": consented.strftime("%Y-%m-%dT%H:%M"),
                "signer": "lar",
                "lar_name": LAR_NAME,
                "lar_relationship": "daughter",
            },
        )
        client_for(investigator_a).post(base + "sign-off/", {"password": PASSWORD})
        # Errors must not echo identifiers either: a bad form, an outsider's 404.
        client_for(coordinator_a).post(base + "screen/", eligible_post(site_a, height_cm="99"))
        client_for(coordinator_b).get(base)
    finally:
        connection.force_debug_cursor = False
    return base


def pages_for(base):
    return [
        base,
        base + "screen/",
        base + "consent/",
        "/participants/",
        "/participants/screening-log/",
        "/participants/re-consent/",
        "/participants/consent-versions/",
        "/audit/",
    ]


def test_own_site_staff_see_the_name_only_on_the_participant_page(
    client_for, coordinator_a, enrolled
):
    client = client_for(coordinator_a)
    assert NAME in client.get(enrolled).content.decode()
    for path in pages_for(enrolled)[1:7]:
        page = client.get(path).content.decode()
        assert not any(i in page for i in IDENTIFIERS), path


@pytest.mark.parametrize("who", ["coordinator_b", "data_manager", "monitor", "administrator"])
def test_no_page_outside_the_site_shows_an_identifier(client_for, cast, who, enrolled):
    client = client_for(cast[who])
    opened = 0
    for path in pages_for(enrolled):
        response = client.get(path)
        opened += response.status_code == 200
        page = response.content.decode()
        assert not any(i in page for i in IDENTIFIERS), (who, path)
    assert opened >= 4  # the check read real pages, not only refusals


def test_no_log_line_or_email_contains_an_identifier(enrolled, caplog):
    logged = [r.getMessage() for r in caplog.get_records("setup")]
    # The check read real lines: the SQL that stored the participant, the outsider's 404.
    assert any('INSERT INTO "enrollment_participant"' in line for line in logged)
    assert any("Not Found: /participants/SHE-0001/" in line for line in logged)
    for record in caplog.get_records("setup"):
        line = record.getMessage()
        assert not any(i in line for i in IDENTIFIERS), line
    for message in mail.outbox:
        text = message.subject + message.body + "".join(str(a) for a in message.alternatives)
        assert not any(i in text for i in IDENTIFIERS)
