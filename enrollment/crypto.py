"""Patient identifiers at rest: Fernet encryption, and a keyed hash of the MRN per site.

The key is settings.FIELD_ENCRYPTION_KEY (from the environment). Without it, storing or
reading an identifier raises ImproperlyConfigured at that moment, so a production install
without its key can start and pass health checks but never writes identifiers in clear.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

MISSING_KEY = (
    "FIELD_ENCRYPTION_KEY is not set: patient identifiers cannot be stored or read. "
    "Set it to a Fernet key (python -c 'from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())')."
)


@lru_cache(maxsize=4)
def _fernet(key: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"FIELD_ENCRYPTION_KEY is not a valid Fernet key: {exc}"
        ) from exc


def _key() -> str:
    key = settings.FIELD_ENCRYPTION_KEY
    if not key:
        raise ImproperlyConfigured(MISSING_KEY)
    return key


def encrypt(text: str) -> str:
    return _fernet(_key()).encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet(_key()).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "An identifier cannot be decrypted with FIELD_ENCRYPTION_KEY (wrong key?)."
        ) from exc


def normalise_mrn(mrn: str) -> str:
    """Hospital numbers are compared without spaces and case, as clerks type them variously."""
    return "".join(mrn.split()).upper()


def mrn_hash(*, site_code: str, mrn: str) -> str:
    """HMAC-SHA256 of the MRN under a key derived per site: equal MRNs at one site match,
    and the same MRN at two sites (two hospitals' number spaces) gives unrelated hashes."""
    site_key = hmac.new(_key().encode(), f"mrn-hash:{site_code}".encode(), hashlib.sha256)
    return hmac.new(site_key.digest(), normalise_mrn(mrn).encode(), hashlib.sha256).hexdigest()


class EncryptedTextField(models.TextField):
    """Text stored as a Fernet token and read back as text.

    An empty value stays empty, so that database constraints can test for presence. Lookups
    other than isnull/exact-empty are meaningless (each encryption differs): find records by
    a keyed hash instead.
    """

    # The audit trail shows that such a field changed, never its values (trialsite.core.audit).
    identifier = True

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(value)
