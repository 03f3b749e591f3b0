from django.urls import path

from . import views

app_name = "enrollment"

urlpatterns = [
    path("", views.participant_list, name="participant_list"),
    path("register/", views.participant_register, name="participant_register"),
    path("screening-log/", views.screening_log, name="screening_log"),
    path("consent-versions/", views.consent_version_list, name="consent_version_list"),
    path("consent-versions/new/", views.consent_version_create, name="consent_version_create"),
    path(
        "consent-versions/<int:pk>/document.pdf",
        views.consent_version_document,
        name="consent_version_document",
    ),
    path("re-consent/", views.reconsent_list, name="reconsent_list"),
    path("<str:study_number>/", views.participant_detail, name="participant_detail"),
    path("<str:study_number>/screen/", views.participant_screen, name="participant_screen"),
    path("<str:study_number>/consent/", views.consent_record, name="consent_record"),
    path("<str:study_number>/refusal/", views.consent_refusal, name="consent_refusal"),
    path("<str:study_number>/withdraw/", views.withdrawal, name="withdrawal"),
    path("<str:study_number>/sign-off/", views.eligibility_signoff, name="eligibility_signoff"),
]
