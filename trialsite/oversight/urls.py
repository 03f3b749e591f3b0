from django.urls import path

from . import views

app_name = "oversight"

urlpatterns = [
    path("consort/", views.consort, name="consort"),
    path("consort.svg", views.consort_svg, name="consort_svg"),
    path("record-status/", views.record_status, name="record_status"),
    path("enrollment/", views.enrollment, name="enrollment"),
]
