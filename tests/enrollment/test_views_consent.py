"""Consent pages: versions, consent (LAR, witness, dates), refusal, withdrawal, sign-off."""

import datetime
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from enrollment import services
from enrollment.models import (
    Consent,
    ConsentRefusal,
    ConsentVersion,
    EligibilitySignoff,
    Withdrawal,
)
from tests.enrollment.conftest import eligible_answers, site_today
from tests.factories import PASSWORD, ConsentVersionFactory


def url(name, participant):
    return reverse(f"enrollment:{name}", args=[participant.study_number])


def local_input(moment: datetime.datetime, site) -> str:
    return timezone.localtime(moment, site.zone).strftime("%Y-%m-%dT%H:%M")


def lar_consent_post(consent_version, site, **changes):
    data = {
        "submission_token": "5b0c1d7e-2222-4a4a-9b9b-000000000002",
        "version": consent_version.pk,
        "consented_at": local_input(timezone.now() - timedelta(minutes=10), site),
        "signer": "lar",
        "lar_name": "Zhang Min",
        "lar_relationship": "daughter",
        "copy_given": "on",
    }
    data.update(changes)
    return data


# --- Consent versions ---------------------------------------------------------------------


def test_administrator_adds_a_consent_version(client_for, administrator, protocol):
    response = client_for(administrator).post(
        reverse("enrollment:consent_version_create"),
        {
            "version": "2.0",
            "language": "zh-hans",
            "irb_approval_date": "2026-02-01",
            "effective_date": "2026-02-10",
        },
    )
    assert response.status_code == 302
    version = ConsentVersion.objects.get()
    assert (version.version, version.language, version.created_by) == (
        "2.0",
        "zh-hans",
        administrator,
    )


def test_effective_date_before_approval_is_refused(client_for, administrator, protocol):
    response = client_for(administrator).post(
        reverse("enrollment:consent_version_create"),
        {
            "version": "2.0",
            "language": "en",
            "irb_approval_date": "2026-02-10",
            "effective_date": "2026-02-01",
        },
    )
    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "The effective date cannot be before the IRB approval date."
    ]
    assert ConsentVersion.objects.count() == 0


@pytest.mark.parametrize("who", ["coordinator_a", "investigator_a", "data_manager"])
def test_only_the_administrator_manages_versions(client_for, cast, who, protocol):
    response = client_for(cast[who]).get(reverse("enrollment:consent_version_create"))
    assert response.status_code == 403


# --- Consent -------------------------------------------------------------------------------------


def test_lar_consent_shows_an_open_task_until_in_person_consent(
    client_for, coordinator_a, participant_a, consent_version
):
    client = client_for(coordinator_a)
    site = participant_a.site
    response = client.post(
        url("consent_record", participant_a), lar_consent_post(consent_version, site)
    )
    assert response.status_code == 302
    consent = Consent.objects.get()
    assert (consent.signer, consent.lar_name, consent.lar_relationship, consent.copy_given) == (
        "lar",
        "Zhang Min",
        "daughter",
        True,
    )
    page = client.get(url("participant_detail", participant_a)).content.decode()
    assert "Open task: re-consent the participant in person when able" in page
    tasks = client.get(reverse("enrollment:reconsent_list")).context["tasks"]
    assert [t.participant for t in tasks] == [participant_a]

    in_person = lar_consent_post(
        consent_version,
        site,
        submission_token="5b0c1d7e-2222-4a4a-9b9b-000000000003",
        signer="participant",
        lar_name="",
        lar_relationship="",
    )
    assert client.post(url("consent_record", participant_a), in_person).status_code == 302
    page = client.get(url("participant_detail", participant_a)).content.decode()
    assert "Open task: re-consent" not in page
    assert list(client.get(reverse("enrollment:reconsent_list")).context["tasks"]) == []


def test_consent_time_is_read_in_the_site_time_zone(
    client_for, coordinator_a, participant_a, consent_version
):
    client_for(coordinator_a).post(
        url("consent_record", participant_a),
        lar_consent_post(consent_version, participant_a.site, consented_at="2026-01-15T00:30"),
    )
    # 00:30 in Shanghai is 16:30 UTC the day before.
    assert Consent.objects.get().consented_at == datetime.datetime(
        2026, 1, 14, 16, 30, tzinfo=datetime.UTC
    )


def test_consent_before_the_effective_date_is_a_field_error(
    client_for, coordinator_a, participant_a, consent_version
):
    post = lar_consent_post(consent_version, participant_a.site, consented_at="2026-01-14T23:59")
    response = client_for(coordinator_a).post(url("consent_record", participant_a), post)
    assert response.status_code == 200
    assert response.context["form"].errors == {
        "consented_at": ["The time of consent is before version 1.0 took effect on 2026-01-15."]
    }
    page = response.content.decode()
    assert 'value="2026-01-14T23:59"' in page and 'value="daughter"' in page
    assert Consent.objects.count() == 0


def test_lar_without_name_is_a_field_error(
    client_for, coordinator_a, participant_a, consent_version
):
    post = lar_consent_post(consent_version, participant_a.site, lar_name="")
    response = client_for(coordinator_a).post(url("consent_record", participant_a), post)
    assert response.context["form"].errors == {"lar_name": ["Give the representative's name."]}
    assert Consent.objects.count() == 0


def test_only_current_versions_are_offered(
    client_for, coordinator_a, participant_a, consent_version
):
    newer = ConsentVersionFactory(
        version="2.0",
        irb_approval_date=site_today(participant_a.site) - timedelta(days=5),
        effective_date=site_today(participant_a.site) - timedelta(days=1),
    )
    form = client_for(coordinator_a).get(url("consent_record", participant_a)).context["form"]
    assert list(form.fields["version"].queryset) == [newer]
    response = client_for(coordinator_a).post(
        url("consent_record", participant_a),
        lar_consent_post(consent_version, participant_a.site),
    )
    assert list(response.context["form"].errors) == ["version"]
    assert Consent.objects.count() == 0


def test_double_submitted_consent_is_recorded_once(
    client_for, coordinator_a, participant_a, consent_version
):
    client = client_for(coordinator_a)
    post = lar_consent_post(consent_version, participant_a.site)
    client.post(url("consent_record", participant_a), post)
    client.post(url("consent_record", participant_a), post)
    assert Consent.objects.count() == 1


def test_refusal_page_records_the_reason(client_for, coordinator_a, participant_a):
    post = {
        "submission_token": "5b0c1d7e-3333-4a4a-9b9b-000000000004",
        "refused_on": site_today(participant_a.site).isoformat(),
        "reason": "Family declines research",
    }
    client = client_for(coordinator_a)
    assert client.post(url("consent_refusal", participant_a), post).status_code == 302
    client.post(url("consent_refusal", participant_a), post)
    assert ConsentRefusal.objects.get().reason == "Family declines research"
    page = client.get(url("participant_detail", participant_a)).content.decode()
    assert "Family declines research" in page


def test_withdrawal_page_shows_the_scope(client_for, coordinator_a, participant_a, consent_version):
    services.consent_record(
        participant=participant_a,
        user=coordinator_a,
        version=consent_version,
        consented_at=timezone.now() - timedelta(days=1),
        signer="participant",
    )
    post = {
        "submission_token": "5b0c1d7e-4444-4a4a-9b9b-000000000005",
        "scope": "treatment",
        "withdrawn_on": site_today(participant_a.site).isoformat(),
        "reason": "Infusion reaction feared",
    }
    client = client_for(coordinator_a)
    assert client.post(url("withdrawal", participant_a), post).status_code == 302
    assert Withdrawal.objects.get().scope == "treatment"
    page = client.get(url("participant_detail", participant_a)).content.decode()
    assert "Study treatment only" in page and "Infusion reaction feared" in page


def test_withdrawal_in_the_future_is_a_field_error(
    client_for, coordinator_a, participant_a, consent_version
):
    post = {
        "submission_token": "5b0c1d7e-4444-4a4a-9b9b-000000000006",
        "scope": "data",
        "withdrawn_on": (site_today(participant_a.site) + timedelta(days=1)).isoformat(),
        "reason": "x",
    }
    response = client_for(coordinator_a).post(url("withdrawal", participant_a), post)
    assert response.context["form"].errors == {
        "withdrawn_on": ["The date cannot be in the future."]
    }
    assert Withdrawal.objects.count() == 0


# --- Sign-off and the gate -----------------------------------------------------------------------


@pytest.fixture
def ready_but_unsigned(participant_a, coordinator_a, consent_version):
    services.participant_screen(
        participant=participant_a,
        user=coordinator_a,
        answers=eligible_answers(participant_a.site),
    )
    services.consent_record(
        participant=participant_a,
        user=coordinator_a,
        version=consent_version,
        consented_at=timezone.now() - timedelta(hours=1),
        signer="participant",
    )
    return participant_a


def test_investigator_signs_off_and_the_participant_is_ready(
    client_for, investigator_a, ready_but_unsigned
):
    participant = ready_but_unsigned
    client = client_for(investigator_a)
    page = client.get(url("participant_detail", participant)).content.decode()
    assert "No investigator has signed off the latest screening." in page
    assert "Ready to randomize" not in page
    signing = client.get(url("eligibility_signoff", participant)).content.decode()
    assert investigator_a.get_full_name() in signing
    assert "I confirm this patient is eligible." in signing
    response = client.post(url("eligibility_signoff", participant), {"password": PASSWORD})
    assert response.status_code == 302
    page = client.get(url("participant_detail", participant)).content.decode()
    assert "Ready to randomize" in page
    signoff = EligibilitySignoff.objects.get()
    assert f"Signed: {signoff.printed_name}" in page


def test_wrong_password_is_a_field_error(client_for, investigator_a, ready_but_unsigned):
    response = client_for(investigator_a).post(
        url("eligibility_signoff", ready_but_unsigned), {"password": "not-my-password"}
    )
    assert response.context["form"].errors == {"password": ["The password is not correct."]}
    assert EligibilitySignoff.objects.count() == 0


def test_coordinator_cannot_sign_off(client_for, coordinator_a, ready_but_unsigned):
    response = client_for(coordinator_a).post(
        url("eligibility_signoff", ready_but_unsigned), {"password": PASSWORD}
    )
    assert response.status_code == 403
    assert EligibilitySignoff.objects.count() == 0


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def _version_post(document):
    return {
        "version": "2.0",
        "language": "en",
        "irb_approval_date": "2026-02-01",
        "effective_date": "2026-02-10",
        "document": document,
    }


def test_the_consent_document_is_uploaded_and_read_by_site_staff(
    client_for, administrator, coordinator_a, protocol, settings, tmp_path
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.MEDIA_ROOT = tmp_path
    upload = SimpleUploadedFile("icf-v2.pdf", PDF, content_type="application/pdf")
    response = client_for(administrator).post(
        reverse("enrollment:consent_version_create"), _version_post(upload)
    )
    assert response.status_code == 302
    version = ConsentVersion.objects.get()
    url = reverse("enrollment:consent_version_document", args=[version.pk])
    assert (
        url
        in client_for(coordinator_a)
        .get(reverse("enrollment:consent_version_list"))
        .content.decode()
    )
    download = client_for(coordinator_a).get(url)
    assert download.status_code == 200
    assert download["Content-Type"] == "application/pdf"
    assert b"".join(download.streaming_content) == PDF


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("icf.docx", b"PK\x03\x04", "Upload the approved consent document as a PDF file."),
        ("icf.pdf", b"<html>not a pdf</html>", "This file is not a PDF."),
    ],
)
def test_a_consent_document_that_is_not_a_pdf_is_refused(
    client_for, administrator, protocol, settings, tmp_path, name, content, message
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.MEDIA_ROOT = tmp_path
    response = client_for(administrator).post(
        reverse("enrollment:consent_version_create"),
        _version_post(SimpleUploadedFile(name, content)),
    )
    assert response.status_code == 200
    assert response.context["form"].errors == {"document": [message]}
    assert not ConsentVersion.objects.exists()
    assert not any(tmp_path.rglob("*"))


def test_a_version_without_a_document_has_none_to_download(client_for, coordinator_a, protocol):
    version = ConsentVersionFactory(created_by=coordinator_a)
    url = reverse("enrollment:consent_version_document", args=[version.pk])
    assert client_for(coordinator_a).get(url).status_code == 404
