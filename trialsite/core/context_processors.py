from .access import access_for
from .models import Role


def trial_access(request):
    """The user's roles for the navigation; each link shows only where its view would open."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    access = access_for(user)
    return {
        "trial_access": access,
        "user_roles": [(role, Role(role).label) for role in access.roles],
        "nav": {
            "audit": access.has(Role.DATA_MANAGER, Role.MONITOR, Role.ADMINISTRATOR),
            "users": access.has(Role.ADMINISTRATOR),
        },
    }
