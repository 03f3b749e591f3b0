"""Fakes of the outside world only (mail servers), for in-process and worker tests."""

import os
import smtplib
import time

from django.core.mail.backends.filebased import EmailBackend as FileBackend


class FailingChannel:
    """A mail server that is down."""

    def send(self, **kwargs) -> None:
        raise smtplib.SMTPServerDisconnected("the mail server went away")


class SlowFileBackend(FileBackend):
    """Django's file backend behind a slow link (SLOW_MAIL_SECONDS per message), so that a
    test can kill a worker in the middle of a batch."""

    def send_messages(self, email_messages):
        time.sleep(float(os.environ.get("SLOW_MAIL_SECONDS", "0.2")))
        return super().send_messages(email_messages)
