from django.urls import path

from . import views

app_name = "outcomes"

urlpatterns = [
    # --- Visits ---
    path(
        "participants/<str:study_number>/visits/",
        views.participant_visits,
        name="participant_visits",
    ),
    path("visits/<int:pk>/", views.visit_detail, name="visit_detail"),
    path("visits/<int:pk>/record/", views.visit_record, name="visit_record"),
    path("visits/<int:pk>/correct/", views.visit_record_correct, name="visit_record_correct"),
    # --- Adverse events and end of study ---
    path("participants/<str:study_number>/adverse-events/", views.ae_list, name="ae_list"),
    path("participants/<str:study_number>/adverse-events/new/", views.ae_record, name="ae_record"),
    path("adverse-events/<int:pk>/change/", views.ae_change, name="ae_change"),
    path("adverse-events/<int:pk>/causality/", views.ae_causality, name="ae_causality"),
    path("adverse-events/<int:pk>/report/", views.ae_report, name="ae_report"),
    path("adverse-events/serious/", views.ae_open_reports, name="ae_open_reports"),
    path("participants/<str:study_number>/end-of-study/", views.end_of_study, name="end_of_study"),
    path(
        "participants/<str:study_number>/end-of-study/sign/",
        views.end_of_study_sign,
        name="end_of_study_sign",
    ),
]
