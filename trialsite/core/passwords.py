"""How passwords are stored: Argon2id at OWASP's recommended minimum (19 MiB of memory, two
passes, one lane), memory-hard where PBKDF2 is not, so a stolen hash costs an attacker's GPUs
as much as Django's PBKDF2 default of 1,000,000 iterations, at about a fourteenth of the
server's CPU (39 ms against 540 ms here). The CPU matters: each login and each signature
re-enters the password, and a ward's busy minute of sign-offs at PBKDF2's cost was half of
what the web workers spent (docs/benchmarks.md, load test).

Hashes already stored in another format are still accepted, and Django stores the password
again in this one at the user's next login (a re-hash, not a change, in the audit trail)."""

from django.contrib.auth.hashers import Argon2PasswordHasher


class Argon2idHasher(Argon2PasswordHasher):
    algorithm = "argon2"  # Django's own name: its stored hashes read the same way
    time_cost = 2
    memory_cost = 19 * 1024  # KiB
    parallelism = 1
