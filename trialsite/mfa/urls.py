from django.urls import path
from django.views.i18n import JavaScriptCatalog

from . import passkeys, views

# django-otp-webauthn's browser script and template tags find its endpoints by these names.
# Registering sits under enrol/ and the login step under verify/, so that the second-factor
# middleware opens each exactly when its page is open.
passkey_patterns = (
    [
        path(
            "enrol/passkey/begin/",
            passkeys.PasskeyRegisterBegin.as_view(),
            name="credential-registration-begin",
        ),
        path(
            "enrol/passkey/complete/",
            passkeys.PasskeyRegisterComplete.as_view(),
            name="credential-registration-complete",
        ),
        path(
            "verify/passkey/begin/",
            passkeys.PasskeyVerifyBegin.as_view(),
            name="credential-authentication-begin",
        ),
        path(
            "verify/passkey/complete/",
            passkeys.PasskeyVerifyComplete.as_view(),
            name="credential-authentication-complete",
        ),
        path(
            "jsi18n/",
            JavaScriptCatalog.as_view(packages=["django_otp_webauthn"]),
            name="js-i18n-catalog",
        ),
    ],
    "otp_webauthn",
)

app_name = "mfa"

urlpatterns = [
    path("", views.manage, name="manage"),
    path("verify/", views.verify, name="verify"),
    path("enrol/", views.enrol, name="enrol"),
    path("enrol/app/", views.enrol_app, name="enrol_app"),
    path("recovery-codes/", views.recovery_codes, name="recovery_codes"),
    path("remove/", views.remove, name="remove"),
    path("enrol/passkey/done/", views.passkey_done, name="passkey_done"),
    # passkey_patterns are included beside these (trialsite/urls.py), in their own namespace.
]
