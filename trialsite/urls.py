from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views
from .core.forms import LoginForm
from .core.health import HealthzView
from .mfa import urls as mfa_urls

urlpatterns = [
    path("", views.home, name="home"),
    path("home/<str:role>/", views.role_home, name="role_home"),
    path("home/<str:role>/queues/<slug:key>/", views.work_queue, name="work_queue"),
    path("sites/", views.site_list, name="site_list"),
    path("sites/<str:code>/", views.site_detail, name="site_detail"),
    path("sites/<str:code>/edit/", views.site_edit, name="site_edit"),
    path("protocol/", views.protocol_detail, name="protocol_detail"),
    path("audit/", views.audit_log, name="audit_log"),
    path("audit/export.csv", views.audit_log_csv, name="audit_log_csv"),
    path("audit/<str:label>/<int:pk>/", views.record_history, name="record_history"),
    path("users/", views.user_list, name="user_list"),
    path("users/access-review/", views.access_review, name="access_review"),
    path("users/access-review/csv/", views.access_review_csv, name="access_review_csv"),
    path("exports/", include("trialsite.exports.urls")),
    path("oversight/", include("trialsite.oversight.urls")),
    path("participants/", include("enrollment.urls")),
    path("arms/", include("arms.urls")),
    path("dosing/", include("dosing.urls")),
    path("outcomes/", include("outcomes.urls")),
    path(
        "accounts/login/", auth_views.LoginView.as_view(authentication_form=LoginForm), name="login"
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/mfa/", include("trialsite.mfa.urls")),
    path("accounts/mfa/", include(mfa_urls.passkey_patterns)),
    path("healthz", HealthzView.as_view(), name="healthz"),
    # Under /i18n/, which a read-only monitor may post to: choosing a language changes no data.
    path("i18n/language/", views.language_set, name="language_set"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
]

# A database that cannot be reached (a restart, a fail-over) is a 503 asking to retry.
handler500 = "trialsite.core.errors.server_error"
handler400 = "trialsite.core.errors.bad_request"
