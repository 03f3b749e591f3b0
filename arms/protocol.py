"""Arms' section of the protocol: the arms and their allocation ratio, checked against the
randomization settings (block sizes) of the protocol itself."""

from __future__ import annotations

from dataclasses import dataclass

from trialsite.core.protocol import (
    Problem,
    ProtocolDef,
    ProtocolSection,
    Sync,
    duplicate_codes,
)

from .models import Arm


@dataclass(frozen=True)
class ArmDef:
    code: str
    name: str
    arm_type: str
    ratio: int
    description: str = ""
    name_zh: str = ""
    description_zh: str = ""


class ArmsSection(ProtocolSection):
    name = "arms"

    def from_file(self, data: dict) -> list[ArmDef]:
        return [
            ArmDef(
                code=a["code"],
                name=a["name"],
                arm_type=a["arm_type"],
                ratio=int(a["ratio"]),
                description=a.get("description", ""),
                name_zh=a.get("name_zh", ""),
                description_zh=a.get("description_zh", ""),
            )
            for a in data.get("arms", [])
        ]

    def from_db(self, protocol) -> list[ArmDef]:
        return [
            ArmDef(
                code=a.code,
                name=a.name,
                arm_type=a.arm_type,
                ratio=a.ratio,
                description=a.description,
                name_zh=a.name_zh,
                description_zh=a.description_zh,
            )
            for a in protocol.arms.all()
        ]

    def problems(self, definition: ProtocolDef) -> list[Problem]:
        arms = definition.sections[self.name]
        problems = []
        if not arms:
            problems.append(Problem("trialsite.E004", f"Protocol {definition.code} has no arms."))
        if not definition.block_sizes:
            problems.append(
                Problem("trialsite.E001", f"Protocol {definition.code} has no block sizes.")
            )
        ratio_sum = sum(a.ratio for a in arms)
        for size in definition.block_sizes:
            if ratio_sum and size % ratio_sum:
                ratio = ":".join(str(a.ratio) for a in arms)
                problems.append(
                    Problem(
                        "trialsite.E001",
                        f"Block size {size} does not fit the allocation ratio {ratio}.",
                        hint=f"Every block size must be a multiple of {ratio_sum}.",
                    )
                )
        return problems + duplicate_codes("arm", [a.code for a in arms])

    def load(self, protocol, definition: ProtocolDef, *, sync: Sync, reason: str) -> None:
        for order, arm_def in enumerate(definition.sections[self.name]):
            arm = Arm.objects.filter(protocol=protocol, code=arm_def.code).first() or Arm(
                protocol=protocol, code=arm_def.code
            )
            sync(
                arm,
                {
                    "name": arm_def.name,
                    "arm_type": arm_def.arm_type,
                    "ratio": arm_def.ratio,
                    "description": arm_def.description,
                    "name_zh": arm_def.name_zh,
                    "description_zh": arm_def.description_zh,
                    "order": order,
                },
            )
