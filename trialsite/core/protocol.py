"""The protocol definition as plain values, and the registry of its sections.

The foundation knows the protocol's own settings (code, version, randomization and reminder
settings, named rule values); each app owns a section of it (enrollment its criteria, arms
its arms, dosing its dose schedules, outcomes its visits) and registers a `ProtocolSection`
from its `AppConfig.ready()` that reads, checks and loads that section. Loading, the system
checks and `definition_from_db` walk the registry in the order the apps are installed, so an
app's rows may point at a lower app's (a dose schedule at its arm).

`definition_from_toml` reads a protocol file; `definition_from_db` reads what is loaded;
`protocol_problems` checks either with no database, so system checks and tests share it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from django.utils.translation import gettext_lazy as _

# The baseline values a screening can ask for dose adjustments to read (the protocol's dose
# adjustments name them in `when`): the definition says which exist, so that enrollment asks
# for them and dosing reads them without either knowing the other.
BASELINE_INPUTS = {"egfr": _("eGFR (mL/min/1.73 m²)")}


@dataclass(frozen=True)
class ProtocolDef:
    code: str
    title: str
    version: str
    block_sizes: list[int]
    stratify_by_site: bool
    severity_strata: list[str]
    reminder_lead_hours: list[int]
    rules: dict
    title_zh: str = ""
    # Section name -> what its app read (e.g. "arms" -> [ArmDef, ...]).
    sections: dict[str, Any] = field(default_factory=dict)

    def with_section(self, name: str, value: Any) -> ProtocolDef:
        """A copy with one section replaced (amendments in tests, checks of a variant)."""
        return replace(self, sections={**self.sections, name: value})


@dataclass(frozen=True)
class Problem:
    id: str
    msg: str
    hint: str = ""


# A function that saves an audited row if its values changed: (instance, values) -> instance.
Sync = Callable[[Any, dict], Any]


class ProtocolSection:
    """One app's part of the protocol. Subclass it in the app and register an instance from
    the app's `ready()`; every method works on plain values except `from_db` and `load`."""

    name: str = ""

    def from_file(self, data: dict) -> Any:
        """The section, from the protocol file's whole dict."""
        raise NotImplementedError

    def from_db(self, protocol) -> Any:
        """The section as loaded for `protocol` (a few queries, whatever its size)."""
        raise NotImplementedError

    def problems(self, definition: ProtocolDef) -> list[Problem]:
        """Everything wrong with this section of `definition`."""
        return []

    def load(self, protocol, definition: ProtocolDef, *, sync: Sync, reason: str) -> None:
        """Create or update the section's rows for `protocol`; raise ProtocolInvalid to refuse."""
        raise NotImplementedError

    def baseline_inputs(self, protocol) -> set[str]:
        """Which BASELINE_INPUTS this section reads for `protocol` (screening asks for them)."""
        return set()


_sections: dict[str, ProtocolSection] = {}


def register_section(section: ProtocolSection) -> None:
    if section.name in _sections and type(_sections[section.name]) is not type(section):
        raise ValueError(f"Two apps claim the protocol section '{section.name}'.")
    _sections[section.name] = section


def sections() -> list[ProtocolSection]:
    """The registered sections, in the order their apps are installed."""
    return list(_sections.values())


class ProtocolInvalid(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.id}: {p.msg}" for p in problems))


def definition_from_dict(data: dict) -> ProtocolDef:
    randomization = data.get("randomization", {})
    return ProtocolDef(
        code=data["code"],
        title=data["title"],
        title_zh=data.get("title_zh", ""),
        version=str(data["version"]),
        block_sizes=list(randomization.get("block_sizes", [])),
        stratify_by_site=bool(randomization.get("stratify_by_site", True)),
        severity_strata=list(randomization.get("severity_strata", [])),
        reminder_lead_hours=list(data.get("reminders", {}).get("lead_hours", [])),
        rules=dict(data.get("rules", {})),
        sections={s.name: s.from_file(data) for s in sections()},
    )


def definition_from_toml(path: Path) -> ProtocolDef:
    with open(path, "rb") as fh:
        return definition_from_dict(tomllib.load(fh))


def definition_from_db(protocol) -> ProtocolDef:
    """The loaded protocol as plain values."""
    return ProtocolDef(
        code=protocol.code,
        title=protocol.title,
        title_zh=protocol.title_zh,
        version=protocol.version,
        block_sizes=list(protocol.block_sizes),
        stratify_by_site=protocol.stratify_by_site,
        severity_strata=list(protocol.severity_strata),
        reminder_lead_hours=list(protocol.reminder_lead_hours),
        rules=dict(protocol.rules),
        sections={s.name: s.from_db(protocol) for s in sections()},
    )


def protocol_problems(definition: ProtocolDef) -> list[Problem]:
    """Everything wrong with a protocol definition; an empty list means it can run."""
    return [problem for section in sections() for problem in section.problems(definition)]


def duplicate_codes(label: str, codes: list[str]) -> list[Problem]:
    """trialsite.E006 for each code a section uses twice."""
    return [
        Problem("trialsite.E006", f"The {label} code {code} is used twice.")
        for code in sorted({c for c in codes if codes.count(c) > 1})
    ]


def baseline_inputs_needed(protocol) -> list[str]:
    """The baseline values the protocol's sections read, e.g. ["egfr"], asked at screening."""
    return sorted({name for s in sections() for name in s.baseline_inputs(protocol)})
