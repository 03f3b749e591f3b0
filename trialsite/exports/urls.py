from django.urls import path

from . import views

app_name = "exports"

urlpatterns = [
    path("", views.export_bundle, name="bundle"),
    path("<int:pk>/", views.export_detail, name="detail"),
    path("<int:pk>/download/", views.export_file, name="download"),
]
