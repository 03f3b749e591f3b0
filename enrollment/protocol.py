"""Enrollment's section of the protocol: the eligibility criteria."""

from __future__ import annotations

from dataclasses import dataclass, field

from trialsite.core.protocol import (
    Problem,
    ProtocolDef,
    ProtocolSection,
    Sync,
    duplicate_codes,
)

from .models import EligibilityCriterion
from .rules import KNOWN_RULES, settings_problems


@dataclass(frozen=True)
class CriterionDef:
    code: str
    kind: str
    text: str
    rule: str
    params: dict = field(default_factory=dict)
    text_zh: str = ""
    asked_for_sex: list[str] = field(default_factory=list)


class CriteriaSection(ProtocolSection):
    name = "criteria"

    def from_file(self, data: dict) -> list[CriterionDef]:
        return [
            CriterionDef(
                code=c["code"],
                kind=c["kind"],
                text=c["text"],
                text_zh=c.get("text_zh", ""),
                rule=c.get("rule", ""),
                params=dict(c.get("params", {})),
                asked_for_sex=list(c.get("asked_for_sex", [])),
            )
            for c in data.get("criteria", [])
        ]

    def from_db(self, protocol) -> list[CriterionDef]:
        return [
            CriterionDef(
                code=c.code,
                kind=c.kind,
                text=c.text,
                text_zh=c.text_zh,
                rule=c.rule,
                params=dict(c.params),
                asked_for_sex=list(c.asked_for_sex),
            )
            for c in protocol.criteria.all()
        ]

    def problems(self, definition: ProtocolDef) -> list[Problem]:
        criteria = definition.sections[self.name]
        problems = []
        for criterion in criteria:
            if not criterion.rule:
                problems.append(
                    Problem("trialsite.E003", f"Criterion {criterion.code} has no rule.")
                )
            elif criterion.rule not in KNOWN_RULES:
                problems.append(
                    Problem(
                        "trialsite.E003",
                        f"Criterion {criterion.code} names an unknown rule '{criterion.rule}'.",
                        hint="Known rules: " + ", ".join(sorted(KNOWN_RULES)) + ".",
                    )
                )
        problems += [
            Problem("trialsite.E007", message, hint="The eligibility rules read these values.")
            for message in settings_problems(criteria, definition.rules)
        ]
        return problems + duplicate_codes("criterion", [c.code for c in criteria])

    def load(self, protocol, definition: ProtocolDef, *, sync: Sync, reason: str) -> None:
        for order, c in enumerate(definition.sections[self.name]):
            criterion = EligibilityCriterion.objects.filter(
                protocol=protocol, code=c.code
            ).first() or EligibilityCriterion(protocol=protocol, code=c.code)
            sync(
                criterion,
                {
                    "kind": c.kind,
                    "text": c.text,
                    "text_zh": c.text_zh,
                    "rule": c.rule,
                    "params": c.params,
                    "asked_for_sex": c.asked_for_sex,
                    "order": order,
                },
            )
