"""The protocol's sections: each app registers its own, and loading and checking walk them."""

import pytest
from django.conf import settings

from trialsite.core import protocol as registry
from trialsite.core.models import Protocol
from trialsite.core.protocol import (
    Problem,
    ProtocolInvalid,
    ProtocolSection,
    baseline_inputs_needed,
    definition_from_toml,
    protocol_problems,
)
from trialsite.core.services import protocol_load


class Wards(ProtocolSection):
    """A section a new app might add: its rows are loaded after every lower app's."""

    name = "wards"
    loaded: list = []

    def from_file(self, data):
        return list(data.get("wards", ["ICU-1"]))

    def from_db(self, protocol):
        return ["ICU-1"]

    def problems(self, definition):
        wards = definition.sections[self.name]
        return [] if wards else [Problem("wards.E001", "No ward is named.")]

    def load(self, protocol, definition, *, sync, reason):
        if "refuse" in definition.sections[self.name]:
            raise ProtocolInvalid([Problem("wards.E002", "The ward is closed.")])
        self.loaded.append((protocol.code, definition.sections[self.name], reason))


@pytest.fixture
def with_wards(monkeypatch):
    monkeypatch.setattr(registry, "_sections", {**registry._sections, "wards": Wards()})
    Wards.loaded = []
    return Wards


def test_every_app_registers_its_section_in_the_order_the_apps_stand():
    assert [s.name for s in registry.sections()] == [
        "criteria",
        "arms",
        "dose_schedules",
        "visits",
    ]


def test_a_new_section_is_read_checked_and_loaded_with_the_rest(db, with_wards):
    definition = definition_from_toml(settings.PROTOCOL_FILE)
    assert definition.sections["wards"] == ["ICU-1"]
    assert protocol_problems(definition.with_section("wards", [])) == [
        Problem("wards.E001", "No ward is named.")
    ]
    protocol_load(definition=definition)
    assert with_wards.loaded == [("NCT05682586", ["ICU-1"], "load_protocol NCT05682586 v1.0")]


def test_a_section_that_refuses_leaves_nothing_written(db, with_wards):
    definition = definition_from_toml(settings.PROTOCOL_FILE).with_section("wards", ["refuse"])
    with pytest.raises(ProtocolInvalid, match="wards.E002: The ward is closed."):
        protocol_load(definition=definition)
    assert not Protocol.objects.exists()


def test_screening_asks_for_what_the_dose_adjustments_read(protocol):
    assert baseline_inputs_needed(protocol) == ["egfr"]
