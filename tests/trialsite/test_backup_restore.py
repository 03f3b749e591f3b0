"""Backup and restore: pg_dump of a trial, restored into an empty database, is the same trial
table by table (its audit trail and its list's hash included) and the app serves it
(bench/backup_restore.py, whose steps these are)."""

import uuid

import pytest
from django.db import connection

from arms.services import participant_randomize
from bench import backup_restore
from tests.conftest import _database_url_for_children
from tests.factories import active_randomization_list, ready_participant

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_dump_restored_into_an_empty_database_is_the_same_trial_and_is_served(
    postgres, tmp_path, client_for, protocol, site_a, site_b, administrator, coordinator_a,
    investigator_a,
):  # fmt: skip
    active_randomization_list(administrator=administrator, per_stratum=10)
    for _ in range(3):
        participant = ready_participant(
            site=site_a, user=coordinator_a, investigator=investigator_a
        )
        participant_randomize(
            participant=participant, user=coordinator_a, idempotency_key=uuid.uuid4()
        )
    source_url = _database_url_for_children()
    copy = f"{connection.settings_dict['NAME']}_restored"
    copy_url = backup_restore.with_database(source_url, copy)
    backup_restore.drop_database(source_url, copy)  # left by an interrupted run
    backup_restore.dump(source_url, tmp_path / "trial.dump")
    backup_restore.create_database(source_url, copy)
    try:
        backup_restore.restore(tmp_path / "trial.dump", copy_url)
        source = backup_restore.table_fingerprints(source_url)
        restored = backup_restore.table_fingerprints(copy_url)
        before = backup_restore.list_hashes()
        with backup_restore.on_database(copy):
            after = backup_restore.list_hashes()
            pages = backup_restore.served_pages(client_for(coordinator_a), participant)
            stored_name = backup_restore.raw_identifier(participant)
        triggers = backup_restore.history_triggers(copy_url)
    finally:
        backup_restore.drop_database(source_url, copy)

    assert backup_restore.compare(source, restored) == []
    audit = {t: n for t, (n, _) in source.items() if backup_restore.is_audit_table(t)}
    assert (
        audit["enrollment_historicalparticipant"] == 3 and audit["arms_historicalallocation"] == 3
    )
    # The append-only triggers of the history tables, where the install has them, come along.
    assert triggers == backup_restore.history_triggers(source_url)
    ((list_pk, hashes),) = after.items()
    assert after == before
    assert hashes["recomputed"] == hashes["written"] == hashes["locked"] != ""
    assert pages == {
        "participant list": 200,
        "participant page": 200,
        "roster": 200,
        "name readable": 1,
    }
    # Stored encrypted: without FIELD_ENCRYPTION_KEY the copy's names cannot be read.
    assert participant.name not in stored_name
