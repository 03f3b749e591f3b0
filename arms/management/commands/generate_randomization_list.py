"""Generate a draft randomization list from the current protocol (the page does the same)."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from arms import selectors, services


class Command(BaseCommand):
    help = (
        "Generate a concealed, stratified permuted-block randomization list (draft) and print "
        "its report per stratum, never its entries."
    )

    def add_arguments(self, parser):
        parser.add_argument("--per-stratum", type=int, required=True)
        parser.add_argument(
            "--user", required=True, help="Username of a trial administrator (audit trail)."
        )
        parser.add_argument("--note", default="")
        parser.add_argument(
            "--activate", action="store_true", help="Make it the list randomization draws from."
        )

    def handle(self, *args, per_stratum, user, note, activate, **options):
        try:
            administrator = get_user_model().objects.get(username=user)
        except get_user_model().DoesNotExist as exc:
            raise CommandError(f"No user {user}.") from exc
        try:
            randomization_list = services.randomization_list_generate(
                user=administrator, per_stratum=per_stratum, note=note
            )
            if activate:
                randomization_list = services.randomization_list_activate(
                    user=administrator, randomization_list=randomization_list
                )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(f"List {randomization_list.pk}: {randomization_list.status}")
        for report in selectors.list_report(randomization_list):
            counts = ", ".join(f"{arm} {n}" for arm, n in report.arm_counts.items())
            sizes = ", ".join(f"size {s}: {n}" for s, n in report.block_sizes.items())
            verdict = "ok" if report.ok else "; ".join(report.problems)
            self.stdout.write(
                f"  {report.stratum}: {report.entries} entries ({counts}); "
                f"{report.blocks} blocks ({sizes}); {verdict}"
            )
