from django.urls import path

from . import views

app_name = "dosing"

urlpatterns = [
    path("today/", views.worklist, name="worklist"),
    path("doses/<int:pk>/record/", views.dose_record, name="dose_record"),
    path("doses/<int:pk>/correct/", views.administration_correct, name="administration_correct"),
    path("doses/<int:pk>/void/", views.administration_void, name="administration_void"),
    path(
        "participants/<str:study_number>/", views.participant_timeline, name="participant_timeline"
    ),
    path("reminders/", views.reminder_list, name="reminder_list"),
    path("reminders/<int:pk>/resend/", views.reminder_resend, name="reminder_resend"),
]
