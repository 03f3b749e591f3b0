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
]
