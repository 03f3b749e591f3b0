"""The one access layer every view goes through: what a user may see and what they may do.

Site-held roles (coordinator, investigator) see their own sites; the others see all sites.
Objects outside a user's sites are a 404, never a 403, so that their existence does not leak.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from .models import ALL_SITE_ROLES, Role, RoleAssignment, Site

# Order in which a user's home page is chosen when they hold several roles.
ROLE_ORDER = [
    Role.COORDINATOR,
    Role.INVESTIGATOR,
    Role.DATA_MANAGER,
    Role.MONITOR,
    Role.ADMINISTRATOR,
]


@dataclass(frozen=True)
class Access:
    """The roles of one user: role -> site ids, or None for all sites."""

    by_role: dict[str, frozenset[int] | None]
    # A site where the user coordinates asks its coordinators for a second factor (read in the
    # same query as the roles, so the second-factor check costs a coordinator no query).
    coordinator_mfa: bool = False

    @property
    def roles(self) -> list[str]:
        return [r for r in ROLE_ORDER if r in self.by_role]

    def has(self, *roles: str) -> bool:
        return any(r in self.by_role for r in roles)

    def site_ids(self, *roles: str) -> frozenset[int] | None:
        """Sites where the user holds any of `roles` (all roles if none named); None = all."""
        ids: set[int] = set()
        for role in roles or self.by_role:
            if role not in self.by_role:
                continue
            held = self.by_role[role]
            if held is None:
                return None
            ids |= held
        return frozenset(ids)

    @property
    def read_only(self) -> bool:
        """Monitors change nothing; a user whose only role is monitor is read-only."""
        return set(self.by_role) <= {Role.MONITOR}


def access_for(user) -> Access:
    """The user's roles, read once per request and kept on the user object."""
    cached = getattr(user, "_trial_access", None)
    if cached is not None:
        return cached
    by_role: dict[str, set[int] | None] = {}
    coordinator_mfa = False
    if user.is_authenticated and user.is_active:
        for role, site_id, site_mfa in RoleAssignment.objects.filter(user=user).values_list(
            "role", "site_id", "site__coordinators_require_mfa"
        ):
            if role in ALL_SITE_ROLES:
                by_role[role] = None
            elif by_role.get(role, set()) is not None:
                by_role.setdefault(role, set()).add(site_id)
            coordinator_mfa |= role == Role.COORDINATOR and bool(site_mfa)
    access = Access(
        {r: (None if s is None else frozenset(s)) for r, s in by_role.items()},
        coordinator_mfa=coordinator_mfa,
    )
    user._trial_access = access
    return access


def scope_to_sites(queryset: QuerySet, user, *, site_field: str = "site", roles=()) -> QuerySet:
    """Filter a queryset to the sites the user may see (in the query, not after it)."""
    ids = access_for(user).site_ids(*roles)
    return queryset if ids is None else queryset.filter(**{f"{site_field}__in": ids})


def sites_for_user(user, *roles: str) -> QuerySet[Site]:
    ids = access_for(user).site_ids(*roles)
    return Site.objects.all() if ids is None else Site.objects.filter(pk__in=ids)


def site_for_user(user, code: str, *roles: str) -> Site:
    """The site with this code if the user may see it; otherwise 404."""
    return get_object_or_404(sites_for_user(user, *roles), code=code)


def role_required(*roles: str):
    """The view is for users holding one of `roles` (at any site); others get 403."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not access_for(request.user).has(*roles):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        wrapped.trial_roles = tuple(roles)
        return wrapped

    return decorator
