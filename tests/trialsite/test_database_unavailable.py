"""A database that does not answer (a restart, a fail-over) is a 503 page asking to retry,
and the next request, once it answers again, is served by the same process."""

import socket

import pytest
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.exceptions import SessionInterrupted
from django.db import OperationalError, connection
from django.test import RequestFactory

from trialsite.core.errors import bad_request, server_error


def _nowhere() -> dict:
    """Connection settings that reach no database: a port nothing listens on (PostgreSQL),
    a file in a folder that does not exist (SQLite)."""
    if connection.vendor == "sqlite":
        return {"NAME": "/nonexistent-folder/trial.sqlite3"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # released: nothing listens there now
    return {"HOST": "127.0.0.1", "PORT": str(port)}


@pytest.mark.django_db(transaction=True)
def test_a_database_that_does_not_answer_gives_a_503_asking_to_retry_then_recovers(
    client_for, coordinator_a
):
    client = client_for(coordinator_a)
    client.raise_request_exception = False  # as a browser sees it, not as a test re-raises it
    real = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(_nowhere())
    try:
        response = client.get("/participants/")
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(real)
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    page = response.content.decode()
    assert "The database did not answer: it may be restarting." in page
    assert "Traceback" not in page and "OperationalError" not in page
    # The database is back: the same process serves the next request, no restart.
    assert client.get("/participants/").status_code == 200


def test_any_other_failure_is_a_plain_500_page():
    try:
        raise ValueError("a bug")
    except ValueError:
        response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    assert "Something went wrong" in response.content.decode()
    assert "a bug" not in response.content.decode()


def _session_interrupted_by_the_database() -> SessionInterrupted:
    """The chain Django raises when the database goes away between the view and the
    session's save at the end of the request (SessionMiddleware)."""
    try:
        try:
            raise OperationalError("server closed the connection unexpectedly")
        except OperationalError:
            raise UpdateError  # noqa: B904 - the implicit chain is what Django leaves
    except UpdateError:
        try:
            raise SessionInterrupted("The request's session was deleted.")  # noqa: B904
        except SessionInterrupted as exc:
            return exc


def test_a_session_left_unsaved_by_the_database_going_away_is_the_same_503():
    response = bad_request(RequestFactory().get("/"), _session_interrupted_by_the_database())
    assert (response.status_code, response["Retry-After"]) == (503, "30")
    assert "The database did not answer" in response.content.decode()
    # Any other bad request is still a 400.
    assert bad_request(RequestFactory().get("/"), SessionInterrupted("x")).status_code == 400
