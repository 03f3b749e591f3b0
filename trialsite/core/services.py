"""Writes of the foundation: loading the protocol (each app's section through the registry),
editing sites, an account's expiry date."""

from functools import partial

from django.db import transaction

from .audit import audited_save
from .models import AccountProfile, Protocol, Site
from .protocol import ProtocolDef, ProtocolInvalid, protocol_problems, sections


def _sync(instance, values: dict, *, user, reason: str):
    """Set values on an audited instance; save only if something changed."""
    changed = instance._state.adding or any(getattr(instance, k) != v for k, v in values.items())
    for key, value in values.items():
        setattr(instance, key, value)
    if changed:
        audited_save(instance, user=user, reason=reason)
    return instance


@transaction.atomic
def protocol_load(*, definition: ProtocolDef, user=None, make_current: bool = True) -> Protocol:
    """Create or update the protocol from its definition, then each app's section. Idempotent:
    a second load of the same definition writes nothing; every change it does write is in the
    audit trail. A refused section (ProtocolInvalid) leaves nothing written."""
    problems = protocol_problems(definition)
    if problems:
        raise ProtocolInvalid(problems)
    reason = f"load_protocol {definition.code} v{definition.version}"
    sync = partial(_sync, user=user, reason=reason)
    if make_current:
        for other in Protocol.objects.filter(is_current=True).exclude(code=definition.code):
            sync(other, {"is_current": False})
    protocol = Protocol.objects.filter(code=definition.code).first() or Protocol(
        code=definition.code
    )
    sync(
        protocol,
        {
            "title": definition.title,
            "title_zh": definition.title_zh,
            "version": definition.version,
            "is_current": make_current or protocol.is_current,
            "block_sizes": definition.block_sizes,
            "stratify_by_site": definition.stratify_by_site,
            "severity_strata": definition.severity_strata,
            "reminder_lead_hours": definition.reminder_lead_hours,
            "rules": definition.rules,
        },
    )
    for section in sections():
        section.load(protocol, definition, sync=sync, reason=reason)
    return protocol


@transaction.atomic
def site_update(*, site: Site, user, reason: str, **values) -> Site:
    """Change a site's details; the audit trail keeps the old values and the reason."""
    for key, value in values.items():
        setattr(site, key, value)
    return audited_save(site, user=user, reason=reason)


@transaction.atomic
def account_expiry_set(*, account, expires_on, user, reason: str) -> AccountProfile | None:
    """Set (or clear, with None) the date from which `account` can no longer log in. Writes
    nothing when the date is unchanged (no profile and no date: none is created)."""
    profile = AccountProfile.objects.filter(user=account).first()
    if profile is None:
        if expires_on is None:
            return None
        profile = AccountProfile(user=account)
    return _sync(profile, {"expires_on": expires_on}, user=user, reason=reason)
