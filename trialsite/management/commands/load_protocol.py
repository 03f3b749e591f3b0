from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from trialsite.core.protocol import ProtocolInvalid, definition_from_toml
from trialsite.core.services import protocol_load


class Command(BaseCommand):
    help = "Load (or update) the protocol definition from its TOML file. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", default=str(settings.PROTOCOL_FILE))

    def handle(self, *args, path, **options):
        try:
            definition = definition_from_toml(Path(path))
        except (OSError, KeyError, ValueError) as exc:
            raise CommandError(f"Cannot read {path}: {exc}") from exc
        try:
            protocol = protocol_load(definition=definition)
        except ProtocolInvalid as exc:
            raise CommandError(f"The protocol is not valid: {exc}") from exc
        self.stdout.write(
            f"Protocol {protocol} loaded: {protocol.arms.count()} arms, "
            f"{protocol.criteria.count()} criteria, {protocol.visits.count()} visits."
        )
