"""The Simplified Chinese catalogue is complete, current and compiled.

Coordinators and nurses at the Chinese sites work in Chinese: a page that is half English is a
page they misread. So every message of the catalogue is translated (none empty, none fuzzy, the
placeholders kept), the catalogue holds every message `makemessages` finds in the sources
today (a string added to the code fails here until it is translated), the compiled catalogue that
the app reads is the one compiled from it, and every text a template writes is marked for
translation.

The checks that run gettext's own tools need them installed (Debian's `gettext`): without them
they skip, unless TRIAL_REQUIRE_SERVICES is set (as in CI), where a missing tool fails.
"""

from __future__ import annotations

import gettext
import re
import shutil
import subprocess
import sys

import polib
import pytest

from tests.conftest import REQUIRED, ROOT

CATALOGUE = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
COMPILED = CATALOGUE.with_suffix(".mo")
# What `makemessages` must not read: the tests and benchmarks speak English to developers.
MAKEMESSAGES = [
    "makemessages", "-l", "zh_Hans", "--no-obsolete",
    "--ignore=.venv", "--ignore=tests", "--ignore=bench",
]  # fmt: skip
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%%|\{\{.*?\}\}")
COPY_IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "var", "staticfiles", "node_modules", "__pycache__", "output", "*.egg-info"
)


def require_gettext() -> None:
    missing = [tool for tool in ("xgettext", "msgmerge", "msgfmt") if not shutil.which(tool)]
    if not missing:
        return
    reason = f"gettext's {', '.join(missing)} not installed (Debian package gettext)"
    if REQUIRED:
        pytest.fail(f"TRIAL_REQUIRE_SERVICES is set, and {reason}")
    pytest.skip(reason)


def key(entry: polib.POEntry) -> tuple[str | None, str, str | None]:
    return (entry.msgctxt, entry.msgid, entry.msgid_plural or None)


def translations(entry: polib.POEntry) -> list[str]:
    if entry.msgid_plural:
        return [entry.msgstr_plural[i] for i in sorted(entry.msgstr_plural)]
    return [entry.msgstr]


def test_every_message_is_translated_and_none_is_fuzzy():
    catalogue = polib.pofile(str(CATALOGUE))
    assert catalogue.metadata["Plural-Forms"] == "nplurals=1; plural=0;"
    entries = [e for e in catalogue if not e.obsolete]
    assert len(entries) > 700
    assert [e.msgid for e in entries if "fuzzy" in e.flags] == []
    assert [e.msgid for e in entries if not all(t.strip() for t in translations(e))] == []
    assert [e.msgid for e in catalogue if e.obsolete] == []


def test_every_translation_keeps_the_placeholders_of_its_message():
    wrong = []
    for entry in polib.pofile(str(CATALOGUE)):
        source = sorted(PLACEHOLDER.findall(entry.msgid_plural or entry.msgid))
        wrong += [
            (entry.msgid, text)
            for text in translations(entry)
            if sorted(PLACEHOLDER.findall(text)) != source
            and sorted(PLACEHOLDER.findall(text)) != sorted(PLACEHOLDER.findall(entry.msgid))
        ]
    assert wrong == []


def test_the_catalogue_holds_what_the_sources_mark_today(tmp_path):
    """makemessages on a copy of the sources: any message added or changed since the catalogue
    was last made is missing from it. (A message the code no longer has does no harm, and the
    next makemessages --no-obsolete drops it.)"""
    require_gettext()
    copy = tmp_path / "src"
    shutil.copytree(ROOT, copy, ignore=COPY_IGNORED)
    made = subprocess.run(
        [sys.executable, "manage.py", *MAKEMESSAGES],
        cwd=copy,
        capture_output=True,
        text=True,
        env={"DEBUG": "1", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert made.returncode == 0, made.stderr
    remade = polib.pofile(str(copy / CATALOGUE.relative_to(ROOT)))
    committed = polib.pofile(str(CATALOGUE))
    remade_keys = {key(e) for e in remade if not e.obsolete}
    committed_keys = {key(e) for e in committed if not e.obsolete}
    assert sorted(remade_keys - committed_keys, key=str) == [], "new messages, not translated"
    assert [e.msgid for e in remade if "fuzzy" in e.flags] == []


def test_the_compiled_catalogue_is_compiled_from_the_catalogue(tmp_path):
    require_gettext()
    fresh = tmp_path / "django.mo"
    subprocess.run(
        ["msgfmt", "--check", "-o", str(fresh), str(CATALOGUE)], check=True, capture_output=True
    )
    with COMPILED.open("rb") as committed, fresh.open("rb") as compiled:
        assert gettext.GNUTranslations(committed)._catalog == (
            gettext.GNUTranslations(compiled)._catalog
        )


# --- Templates: every text they write is marked -------------------------------------------------

# What a template may write without translating it: names, units and symbols, the same in
# every language.
NEUTRAL = re.compile(r"\b(?:CTMS|UTC|PDF|mmHg|mg/L|pg/mL|SHA-256)(?![\w/])|&\w+;")
USER_ATTRIBUTES = re.compile(r'\b(?:title|placeholder|aria-label|alt)="([^"]*[A-Za-z][^"]*)"')


def unmarked_text(source: str) -> list[str]:
    """The text a template writes outside {% translate %} / {% blocktranslate %}."""
    text = re.sub(r"{%\s*comment\s*%}.*?{%\s*endcomment\s*%}", "", source, flags=re.S)
    text = re.sub(r"{%\s*blocktranslate.*?{%\s*endblocktranslate\s*%}", "", text, flags=re.S)
    text = re.sub(r"{#.*?#}", "", text, flags=re.S)
    text = re.sub(r"{%.*?%}|{{.*?}}", " ", text, flags=re.S)
    found = [m.group(0) for m in USER_ATTRIBUTES.finditer(text)]
    text = re.sub(r"<script.*?</script>|<style.*?</style>|<[^>]*>", " ", text, flags=re.S)
    found += [line.strip() for line in text.splitlines() if re.search(r"[A-Za-z]{2}", line)]
    return [t for t in found if re.search(r"[A-Za-z]{2}", NEUTRAL.sub("", t))]


def test_every_text_a_template_writes_is_marked_for_translation():
    templates = sorted((ROOT / "templates").rglob("*.html")) + sorted(
        (ROOT / "templates").rglob("*.txt")
    )
    assert len(templates) > 50
    unmarked = {
        str(path.relative_to(ROOT)): found
        for path in templates
        if (found := unmarked_text(path.read_text(encoding="utf-8")))
    }
    assert unmarked == {}


def test_the_template_check_finds_unmarked_text():
    assert unmarked_text('<p>{% translate "Saved" %} Dose recorded</p>') == ["Dose recorded"]
    assert unmarked_text('<a aria-label="Close">{{ x }}</a>') == ['aria-label="Close"']
    assert unmarked_text("{% blocktranslate %}Dose {{ n }}{% endblocktranslate %}") == []
    assert unmarked_text("<td>{{ value }} mmHg</td><td>{{ when }} UTC</td>") == []
    assert unmarked_text("<td>{{ value }} mmHg when awake</td>") == ["mmHg when awake"]
