"""/healthz: the database and the broker, through django-health-check."""

import dataclasses
import datetime

from django.contrib.auth.decorators import login_not_required
from django.utils.decorators import method_decorator
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView


@dataclasses.dataclass
class Broker(HealthCheck):
    """The Celery broker accepts a connection (Redis, or the filesystem transport's folders)."""

    timeout = datetime.timedelta(seconds=5)

    def run(self):
        from trialsite.celery import app

        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
                conn.default_channel  # noqa: B018 - opening a channel is the real test
        except Exception as exc:  # noqa: BLE001 - any failure means the broker is unusable
            raise ServiceUnavailable(f"broker: {type(exc).__name__}") from exc


@method_decorator(login_not_required, name="dispatch")
class HealthzView(HealthCheckView):
    checks = ("health_check.checks.Database", "trialsite.core.health.Broker")

    async def get(self, request, *args, **kwargs):
        response = await super().get(request, *args, **kwargs)
        # Load balancers and compose read 503 as "not ready"; the library says 500.
        if response.status_code == 500:
            response.status_code = 503
        return response
