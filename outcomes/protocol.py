"""Outcomes' section of the protocol: the follow-up visits and their windows."""

from __future__ import annotations

from dataclasses import dataclass

from trialsite.core.protocol import (
    Problem,
    ProtocolDef,
    ProtocolSection,
    Sync,
    duplicate_codes,
)

from .models import VisitDefinition


@dataclass(frozen=True)
class VisitDef:
    code: str
    name: str
    study_day: int
    window_days: int
    name_zh: str = ""


class VisitsSection(ProtocolSection):
    name = "visits"

    def from_file(self, data: dict) -> list[VisitDef]:
        return [
            VisitDef(
                code=v["code"],
                name=v["name"],
                study_day=int(v["study_day"]),
                window_days=int(v.get("window_days", 0)),
                name_zh=v.get("name_zh", ""),
            )
            for v in data.get("visits", [])
        ]

    def from_db(self, protocol) -> list[VisitDef]:
        return [
            VisitDef(
                code=v.code,
                name=v.name,
                study_day=v.study_day,
                window_days=v.window_days,
                name_zh=v.name_zh,
            )
            for v in protocol.visits.all()
        ]

    def problems(self, definition: ProtocolDef) -> list[Problem]:
        return duplicate_codes("visit", [v.code for v in definition.sections[self.name]])

    def load(self, protocol, definition: ProtocolDef, *, sync: Sync, reason: str) -> None:
        for v in definition.sections[self.name]:
            visit = VisitDefinition.objects.filter(protocol=protocol, code=v.code).first() or (
                VisitDefinition(protocol=protocol, code=v.code)
            )
            sync(
                visit,
                {
                    "name": v.name,
                    "name_zh": v.name_zh,
                    "study_day": v.study_day,
                    "window_days": v.window_days,
                },
            )
