from django.core.exceptions import PermissionDenied

from .access import access_for

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class ReadOnlyRoleMiddleware:
    """A monitor changes nothing: every unsafe request from a read-only user is refused,
    whatever the view forgets. Logging out and choosing a language are not changes."""

    ALLOWED_PATHS = ("/accounts/logout/", "/i18n/")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (
            request.method not in SAFE_METHODS
            and request.user.is_authenticated
            and not request.path.startswith(self.ALLOWED_PATHS)
            and access_for(request.user).read_only
            and not request.user.is_superuser
        ):
            raise PermissionDenied
        return self.get_response(request)
