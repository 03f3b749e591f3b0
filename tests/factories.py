import factory
from django.contrib.auth.models import User

from trialsite.audit import audited_save
from trialsite.models import Role, RoleAssignment, Site

PASSWORD = "correct-horse-battery-9"


class AuditedFactory(factory.django.DjangoModelFactory):
    """Creates audited records the way services do, so history rows exist."""

    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return audited_save(model_class(*args, **kwargs))


class SiteFactory(AuditedFactory):
    class Meta:
        model = Site

    code = factory.Sequence(lambda n: "S" + "".join(chr(65 + int(d)) for d in f"{n:03d}"))
    name = factory.Sequence(lambda n: f"Hospital {n}")
    time_zone = "Asia/Shanghai"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = "Test"
    last_name = factory.Sequence(lambda n: f"User{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password(PASSWORD)


class RoleAssignmentFactory(AuditedFactory):
    class Meta:
        model = RoleAssignment

    user = factory.SubFactory(UserFactory)
    role = Role.COORDINATOR
    site = factory.SubFactory(SiteFactory)


def user_with_role(role: str, site: Site | None = None, **user_fields) -> User:
    user = UserFactory(**user_fields)
    RoleAssignmentFactory(user=user, role=role, site=site)
    return user


# --- Enrollment ---------------------------------------------------------------------------------

import datetime  # noqa: E402

from enrollment.models import ConsentVersion, Participant  # noqa: E402
from enrollment.services import participant_register  # noqa: E402
from trialsite.models import Protocol  # noqa: E402


class ParticipantFactory(factory.Factory):
    """Registers through the service, so the study number and the MRN hash are real."""

    class Meta:
        model = Participant

    site = factory.SubFactory(SiteFactory)
    user = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Testpatient Number{n}")
    mrn = factory.Sequence(lambda n: f"MRN{n:07d}")
    sex = "F"
    date_of_birth = datetime.date(1970, 5, 1)
    contact = ""

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return participant_register(**kwargs)


class ConsentVersionFactory(AuditedFactory):
    class Meta:
        model = ConsentVersion

    protocol = factory.LazyFunction(lambda: Protocol.objects.get(is_current=True))
    version = factory.Sequence(lambda n: f"1.{n}")
    language = "en"
    irb_approval_date = datetime.date(2026, 1, 5)
    effective_date = datetime.date(2026, 1, 15)
    created_by = factory.SubFactory(UserFactory)
