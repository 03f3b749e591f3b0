"""The load test's URLs: the trial's own, and the floor it is measured against."""

from django.http import HttpResponse
from django.urls import path

from trialsite import urls as trial_urls


def floor(request):
    """A bare logged-in page: every middleware of the trial's pages (session, login, second
    factor, role held, CSRF, CSP) and nothing else, no query of its own and no template."""
    return HttpResponse(f"floor {request.user.pk}", content_type="text/plain")


urlpatterns = [path("bench/floor/", floor, name="bench_floor"), *trial_urls.urlpatterns]
# The trial's own error pages, where it declares them.
for _name in ("handler400", "handler403", "handler404", "handler500"):
    if hasattr(trial_urls, _name):
        globals()[_name] = getattr(trial_urls, _name)
