"""The composition's Celery tasks, found here by the app's autodiscovery."""

from trialsite.exports.jobs import export_bundle_build, exports_sweep

__all__ = ["export_bundle_build", "exports_sweep"]
