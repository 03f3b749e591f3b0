"""Writes of the trialsite app: loading the protocol, editing sites."""

from django.db import transaction
from django.db.models import ProtectedError

from arms.models import Arm
from dosing.models import DoseSchedule
from enrollment.models import EligibilityCriterion
from outcomes.models import VisitDefinition

from .audit import audited_save
from .models import Protocol, Site
from .protocol import Problem, ProtocolDef, protocol_problems


class ProtocolInvalid(Exception):
    def __init__(self, problems):
        self.problems = problems
        super().__init__("; ".join(f"{p.id}: {p.msg}" for p in problems))


def _sync(instance, values: dict, *, user, reason: str) -> tuple[object, bool]:
    """Set values on an audited instance; save only if something changed."""
    changed = instance._state.adding or any(getattr(instance, k) != v for k, v in values.items())
    for key, value in values.items():
        setattr(instance, key, value)
    if changed:
        audited_save(instance, user=user, reason=reason)
    return instance, changed


@transaction.atomic
def protocol_load(*, definition: ProtocolDef, user=None, make_current: bool = True) -> Protocol:
    """Create or update the protocol from its definition. Idempotent: a second load of the
    same definition writes nothing; every change it does write is in the audit trail."""
    problems = protocol_problems(definition)
    if problems:
        raise ProtocolInvalid(problems)
    reason = f"load_protocol {definition.code} v{definition.version}"
    if make_current:
        for other in Protocol.objects.filter(is_current=True).exclude(code=definition.code):
            _sync(other, {"is_current": False}, user=user, reason=reason)
    protocol = Protocol.objects.filter(code=definition.code).first() or Protocol(
        code=definition.code
    )
    _sync(
        protocol,
        {
            "title": definition.title,
            "version": definition.version,
            "is_current": make_current or protocol.is_current,
            "block_sizes": definition.block_sizes,
            "stratify_by_site": definition.stratify_by_site,
            "severity_strata": definition.severity_strata,
            "reminder_lead_hours": definition.reminder_lead_hours,
            "rules": definition.rules,
        },
        user=user,
        reason=reason,
    )
    for order, arm_def in enumerate(definition.arms):
        arm = Arm.objects.filter(protocol=protocol, code=arm_def.code).first() or Arm(
            protocol=protocol, code=arm_def.code
        )
        _sync(
            arm,
            {
                "name": arm_def.name,
                "arm_type": arm_def.arm_type,
                "ratio": arm_def.ratio,
                "description": arm_def.description,
                "order": order,
            },
            user=user,
            reason=reason,
        )
        existing = list(arm.dose_schedules.order_by("pk"))
        for index, s in enumerate(arm_def.dose_schedules):
            schedule = existing[index] if index < len(existing) else DoseSchedule(arm=arm)
            _sync(
                schedule,
                {
                    "product": s.product,
                    "route": s.route,
                    "study_days": s.study_days,
                    "times": s.times,
                    "window_kind": s.window_kind,
                    "window_hours": s.window_hours,
                    "amount": s.amount,
                    "amount_unit": s.amount_unit,
                    "per_kg": s.per_kg,
                    "adjustments": s.adjustments,
                    "notes": s.notes,
                    "amount_min_fraction": s.amount_min_fraction,
                    "amount_max_fraction": s.amount_max_fraction,
                    "far_outside_window_hours": s.far_outside_window_hours,
                },
                user=user,
                reason=reason,
            )
        for extra in existing[len(arm_def.dose_schedules) :]:
            extra._change_reason = reason
            try:
                extra.delete()
            except ProtectedError:
                # Participants' scheduled doses point at it: the amendment must not erase
                # what they were planned to receive.
                raise ProtocolInvalid(
                    [
                        Problem(
                            "trialsite.E009",
                            f"Arm {arm.code}: the schedule of {extra.product} has doses "
                            "planned for participants and cannot be removed.",
                        )
                    ]
                ) from None
    for order, c in enumerate(definition.criteria):
        criterion = EligibilityCriterion.objects.filter(
            protocol=protocol, code=c.code
        ).first() or EligibilityCriterion(protocol=protocol, code=c.code)
        _sync(
            criterion,
            {
                "kind": c.kind,
                "text": c.text,
                "rule": c.rule,
                "params": c.params,
                "asked_for_sex": c.asked_for_sex,
                "order": order,
            },
            user=user,
            reason=reason,
        )
    for v in definition.visits:
        visit = VisitDefinition.objects.filter(protocol=protocol, code=v.code).first() or (
            VisitDefinition(protocol=protocol, code=v.code)
        )
        _sync(
            visit,
            {"name": v.name, "study_day": v.study_day, "window_days": v.window_days},
            user=user,
            reason=reason,
        )
    return protocol


@transaction.atomic
def site_update(*, site: Site, user, reason: str, **values) -> Site:
    """Change a site's details; the audit trail keeps the old values and the reason."""
    for key, value in values.items():
        setattr(site, key, value)
    return audited_save(site, user=user, reason=reason)
