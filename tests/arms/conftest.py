import pytest

from tests.factories import active_randomization_list, ready_participant


@pytest.fixture
def active_list(protocol, site_a, site_b, administrator):
    """A generated, active list: 30 entries per stratum, both sites, both severities."""
    return active_randomization_list(administrator=administrator, per_stratum=30)


@pytest.fixture
def ready_a(active_list, site_a, coordinator_a, investigator_a):
    """A participant at site A who passes the gate, severe."""
    return ready_participant(site=site_a, user=coordinator_a, investigator=investigator_a)
