import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from arms.models import ListStatus, RandomizationList
from enrollment.models import ConsentVersion
from trialsite.core.access import access_for
from trialsite.core.models import Site
from trialsite.management.commands.load_demo import DEMO_PASSWORD

pytestmark = pytest.mark.django_db


def test_demo_data_is_refused_without_debug(protocol):
    with pytest.raises(CommandError, match="DEBUG installs only"):
        call_command("load_demo")


def test_demo_data_gives_one_user_per_role_and_a_trial_ready_to_randomize(protocol, capsys, client):
    call_command("load_demo", "--force")
    call_command("load_demo", "--force")  # idempotent
    assert "password for all: demo-Trial-2026" in capsys.readouterr().out
    roles = {}
    for username in ["coordinator", "investigator", "datamanager", "monitor", "admin"]:
        response = client.post(reverse("login"), {"username": username, "password": DEMO_PASSWORD})
        assert response.status_code == 302, username
        roles[username] = access_for(User.objects.get(username=username)).roles
        client.logout()
    assert roles == {
        "coordinator": ["coordinator"],
        "investigator": ["investigator"],
        "datamanager": ["data_manager"],
        "monitor": ["monitor"],
        "admin": ["administrator"],
    }
    # Version 1.0 in each language the patients read; both demo sites work in Chinese.
    assert sorted(ConsentVersion.objects.values_list("version", "language")) == [
        ("1.0", "en"),
        ("1.0", "zh-hans"),
    ]
    assert set(Site.objects.values_list("code", "language")) == {
        ("SHE", "zh-hans"),
        ("WUH", "zh-hans"),
    }
    assert RandomizationList.objects.filter(status=ListStatus.ACTIVE).count() == 1
