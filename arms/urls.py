from django.urls import path

from . import views

app_name = "arms"

urlpatterns = [
    path("lists/", views.list_index, name="list_index"),
    path("lists/generate/", views.list_generate, name="list_generate"),
    path("lists/upload/", views.list_upload, name="list_upload"),
    path("lists/<int:pk>/", views.list_detail, name="list_detail"),
    path("lists/<int:pk>/entries/", views.list_entries, name="list_entries"),
    path("lists/<int:pk>/export.csv", views.list_export, name="list_export"),
    path("lists/<int:pk>/activate/", views.list_activate, name="list_activate"),
    path("balance/", views.balance, name="balance"),
    path("randomize/<str:study_number>/", views.randomize, name="randomize"),
    path("allocations/<str:study_number>/", views.allocation_detail, name="allocation_detail"),
    path(
        "allocations/<str:study_number>/in-error/",
        views.allocation_mark_in_error,
        name="allocation_mark_in_error",
    ),
    path("roster/", views.roster, name="roster"),
    path("roster/export.csv", views.roster_csv, name="roster_csv"),
    path("roster/<str:arm_code>/", views.roster, name="roster_arm"),
    path("roster/<str:arm_code>/export.csv", views.roster_csv, name="roster_arm_csv"),
]
