import pytest
from django.db import connection
from django.urls import reverse


@pytest.mark.django_db(transaction=True)
def test_healthz_is_200_when_database_and_broker_answer(client):
    response = client.get(reverse("healthz"), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert set(response.json().values()) == {"OK"}


@pytest.mark.django_db(transaction=True)
def test_healthz_is_503_when_the_database_is_down(client, monkeypatch):
    # A real failed connection: the next connection goes to a database that cannot be opened.
    connection.close()
    if connection.vendor == "sqlite":
        monkeypatch.setitem(connection.settings_dict, "NAME", "/nonexistent/dir/db.sqlite3")
    else:
        monkeypatch.setitem(connection.settings_dict, "PORT", "1")
    response = client.get(reverse("healthz"), HTTP_ACCEPT="application/json")
    monkeypatch.undo()
    assert response.status_code == 503
    body = response.json()
    assert body["Broker()"] == "OK"
    assert body["Database(alias='default')"] != "OK"


@pytest.mark.django_db(transaction=True)
def test_healthz_is_503_when_the_broker_is_down(client, dead_broker):
    response = client.get(reverse("healthz"), HTTP_ACCEPT="application/json")
    assert response.status_code == 503
    body = response.json()
    assert body["Database(alias='default')"] == "OK"
    assert body["Broker()"] == "Unavailable: broker: OperationalError"
