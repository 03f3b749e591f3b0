"""How a reminder leaves the building. E-mail through Django's mail backend by default; an
SMS gateway plugs in as another class with the same `send` (settings.DOSING_REMINDER_CHANNEL).
"""

from __future__ import annotations

from django.core.mail import EmailMessage, get_connection


class EmailChannel:
    def send(
        self,
        *,
        subject: str,
        body: str,
        recipients: list[str],
        headers: dict[str, str],
        timeout: int,
    ) -> None:
        """One message, on its own connection: a failure is this reminder's alone."""
        connection = get_connection(timeout=timeout)
        EmailMessage(
            subject=subject, body=body, to=recipients, headers=headers, connection=connection
        ).send(fail_silently=False)
