import time

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django_otp.oath import hotp
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    help = (
        "Print the code a demo user's authenticator app would show now (DEBUG installs only): "
        "for trying the demo without an app on a phone."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username: str, **options):
        if not settings.DEBUG:
            raise CommandError("Printing second-factor codes is for the demo: DEBUG installs only.")
        user = User.objects.filter(username=username).first()
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first() if user else None
        if device is None:
            raise CommandError(f"{username} has no authenticator app: no code is needed.")
        now = time.time()
        step = int(now - device.t0) // device.step + device.drift
        # A code accepted once is refused: after a login in this step, the app's next code,
        # which the check accepts a step early.
        t = max(step, device.last_t + 1)
        if t > step + device.tolerance:
            raise CommandError("Both codes of this minute are used: try again in 30 seconds.")
        seconds_left = device.step - int(now - device.t0) % device.step + (t - step) * device.step
        code = hotp(device.bin_key, t, digits=device.digits)
        self.stdout.write(f"{code:0{device.digits}d}  (good for {seconds_left} more seconds)")
