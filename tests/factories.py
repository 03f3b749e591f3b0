import datetime
import random
import uuid

import factory
from django.contrib.auth.models import User
from django.utils import timezone
from simple_history.utils import bulk_create_with_history as _bulk_create_with_history

from arms.models import Allocation, ListEntry, RandomizationList
from enrollment.models import (
    Consent,
    ConsentVersion,
    Decision,
    EligibilitySignoff,
    Participant,
    Screening,
    Signer,
)
from enrollment.services import participant_register
from trialsite.core.audit import audited_save, unaudited_bulk_writes
from trialsite.core.clock import site_today
from trialsite.core.models import Protocol, Role, RoleAssignment, Site
from trialsite.core.signatures import signature_bind

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


# --- Arms: randomization -------------------------------------------------------------------------


def current_consent_version(user) -> ConsentVersion:
    """One consent version in force for the whole test: a second one would make the first
    out of date, and its consents no longer current."""
    protocol = Protocol.objects.get(is_current=True)
    return ConsentVersion.objects.filter(protocol=protocol, language="en").order_by(
        "-effective_date", "-pk"
    ).first() or ConsentVersionFactory(protocol=protocol, created_by=user)


def ready_participant(*, site, user, investigator=None, severity: str = "severe") -> Participant:
    """A participant who passes the randomization gate: eligible screening with `severity`,
    consent on the current version, the investigator's sign-off."""
    participant = ParticipantFactory(site=site, user=user)
    version = current_consent_version(user)
    audited_save(
        Consent(
            participant=participant,
            version=version,
            consented_at=timezone.now() - datetime.timedelta(hours=2),
            signer=Signer.PARTICIPANT,
            obtained_by=user,
            copy_given=True,
        ),
        user=user,
    )
    screening = audited_save(
        Screening(
            participant=participant,
            protocol=version.protocol,
            screened_by=user,
            screening_date=site_today(site),
            answers={"severity": severity, "weight_kg": "70", "egfr": "90"},
            decision=Decision.ELIGIBLE,
            results=[{"code": "I2", "outcome": "met", "reason": severity}],
        ),
        user=user,
    )
    signer = investigator or user
    signoff = EligibilitySignoff(screening=screening)
    signature_bind(
        signoff,
        signer=signer,
        signed_at=timezone.now(),
        meaning="I confirm this patient is eligible.",
    )
    audited_save(signoff, user=signer)
    return participant


def active_randomization_list(*, administrator, per_stratum: int = 30, seed: int | None = None):
    """A generated list, activated. A seed gives the same list twice (tests only)."""
    from arms.services import randomization_list_activate, randomization_list_generate

    randomization_list = randomization_list_generate(
        user=administrator,
        per_stratum=per_stratum,
        rng=random.Random(seed) if seed is not None else None,  # noqa: S311
    )
    return randomization_list_activate(user=administrator, randomization_list=randomization_list)


def bulk_create_with_history(objs, model, **kwargs):
    """simple-history's bulk write, which writes the history rows with the records but skips
    audited_bulk_create's field checks (thousands of rows for rosters): test data only."""
    with unaudited_bulk_writes("test data in bulk; its history rows are written with it"):
        return _bulk_create_with_history(objs, model, **kwargs)


def bulk_allocated(
    *, site, user, randomization_list: RandomizationList, count: int, severity: str = "severe"
) -> list[Allocation]:
    """`count` randomized participants at `site`, written in bulk (with their history rows):
    for rosters and benchmarks, where thousands are needed quickly. The list's entries are used
    in sequence, as the service would."""
    start = Participant.objects.filter(site=site).count()
    now = timezone.now()
    participants = bulk_create_with_history(
        [
            Participant(
                site=site,
                sequence=start + i + 1,
                study_number=f"{site.code}-{start + i + 1:05d}",
                name=f"Bulk Patient {start + i + 1}",
                mrn=f"B{site.code}{start + i + 1:07d}",
                mrn_hash=uuid.uuid4().hex,
                sex="F" if i % 2 else "M",
                date_of_birth=datetime.date(1960 + i % 40, 1 + i % 12, 1 + i % 28),
                registered_by=user,
            )
            for i in range(count)
        ],
        Participant,
        batch_size=500,
        default_user=user,
    )
    if not participants[0].pk:
        participants = list(
            Participant.objects.filter(site=site, sequence__gt=start).order_by("sequence")
        )
    stratum = randomization_list.strata.get(site=site, severity=severity)
    entries = list(
        ListEntry.objects.filter(stratum=stratum, allocation__isnull=True)
        .select_related("arm")
        .order_by("sequence")[:count]
    )
    assert len(entries) == count, "the list is too short for this many participants"
    return bulk_create_with_history(
        [
            Allocation(
                participant=p,
                entry=e,
                stratum=stratum,
                arm=e.arm,
                randomization_number=f"R{randomization_list.pk}-{stratum.code}-{e.sequence:04d}",
                randomized_at=now - datetime.timedelta(days=i % 20, minutes=i),
                randomized_by=user,
                idempotency_key=uuid.uuid4(),
            )
            for i, (p, e) in enumerate(zip(participants, entries, strict=True))
        ],
        Allocation,
        batch_size=500,
        default_user=user,
    )
