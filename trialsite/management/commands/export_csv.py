"""Scheduled exports: the de-identified bundle's files, dictionary and manifest into a folder."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from trialsite.core.models import Site
from trialsite.exports.bundle import bundle_write
from trialsite.exports.columns import ExportOptions
from trialsite.exports.datasets import DATASETS
from trialsite.exports.deidentify import DateMode
from trialsite.models import ExportSource


class Command(BaseCommand):
    help = (
        "Write the trial's datasets (de-identified), dictionary.csv, manifest.json and, with "
        "--odm, odm.xml into --out. Identified exports are made from the export page by the "
        "trial administrator."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="Folder to write into (created).")
        parser.add_argument(
            "--datasets",
            default=",".join(DATASETS),
            help="Comma-separated dataset names (default: all).",
        )
        parser.add_argument(
            "--sites", default="", help="Comma-separated site codes (default: every site)."
        )
        parser.add_argument("--labels", action="store_true", help="Labels instead of codes.")
        parser.add_argument("--bom", action="store_true", help="UTF-8 byte-order mark (Excel).")
        parser.add_argument(
            "--dates", choices=DateMode.values, default=DateMode.AS_RECORDED, help="Date mode."
        )
        parser.add_argument("--free-text", action="store_true", help="Free-text columns too.")
        parser.add_argument(
            "--odm", action="store_true", help="The clinical data as CDISC ODM 1.3.2 (odm.xml)."
        )

    def handle(self, *args, **options):
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        chosen = [name.strip() for name in options["datasets"].split(",") if name.strip()]
        codes = [code.strip() for code in options["sites"].split(",") if code.strip()]
        site_ids = None
        if codes:
            sites = dict(Site.objects.filter(code__in=codes).values_list("code", "pk"))
            if unknown := sorted(set(codes) - set(sites)):
                raise CommandError(f"Unknown sites: {', '.join(unknown)}")
            site_ids = frozenset(sites.values())
        export_options = ExportOptions(
            datasets=tuple(chosen),
            labels=options["labels"],
            bom=options["bom"],
            date_mode=options["dates"],
            free_text=options["free_text"],
            site_ids=site_ids,
            odm=options["odm"],
        )
        try:
            manifest = bundle_write(
                directory=out, options=export_options, source=ExportSource.COMMAND
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        for written in manifest["files"]:
            self.stdout.write(f"{written['name']}: {written['rows']} rows {written['sha256']}")
        self.stdout.write(f"manifest.json written to {out}")
