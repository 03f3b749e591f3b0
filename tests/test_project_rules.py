"""Project rules: what people type (names, reasons, criteria in the admin, the protocol file)
is data, and data never reaches the template compiler or a "safe" mark.

Django escapes what a template prints, unless the text was compiled as a template
(`Template(...)`, `from_string`, crispy's `Fieldset` legend, `HTML`, `Alert` and button values)
or marked safe (`mark_safe`, `SafeString`, `|safe`, `{% autoescape off %}`). These checks read
the project's own Python and templates (never `.venv`) and allow those only on literal text,
which is code, not data, or at the places listed in ALLOWED, each with its reason. A listed
place that no longer exists fails too, so that the list stays short and true.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_DIRS = {"node_modules", "staticfiles", "var", "__pycache__", "build", "dist"}

TRANSLATIONS = {"_", "gettext", "gettext_lazy", "pgettext", "pgettext_lazy", "ngettext"}
COMPILERS = {"Template", "from_string"}  # compile their first argument
SAFE_MARKS = {"mark_safe", "SafeString", "SafeText", "mark_for_escaping"}
# crispy layout objects that compile one argument as a template: its position.
CRISPY_COMPILED = {"Fieldset": 0, "HTML": 0, "Alert": 0, "Submit": 1, "Button": 1, "Reset": 1}
CRISPY_COMPILED |= {"Hidden": 1, "StrictButton": 0}
TEMPLATE_RULES = {
    "|safe": re.compile(r"\|\s*safe(seq)?\b|\{%\s*filter\s[^%]*\bsafe"),
    "autoescape off": re.compile(r"\{%\s*autoescape\s+off\s*%\}"),
}

# (path, rule, the source of the argument or "") -> why it is not data.
ALLOWED = {
    ("templates/dosing/email/reminder_body.txt", "autoescape off", ""): (
        "A plain-text e-mail body (EmailMessage, text/plain): escaping would print &amp; to the "
        "reader, and no browser renders it."
    ),
    ("enrollment/forms.py", "crispy Submit compiles", "submit_label"): (
        "The button label is given by this module's form classes, always a translated literal."
    ),
    ("outcomes/forms.py", "crispy Submit compiles", "label"): (
        "`_submit(label)` is called by this module's form classes only, each with a translated "
        "literal."
    ),
    **{
        ("trialsite/exports/copy_sql.py", "raw SQL built by formatting", sql): (
            "The export's temporary table of date shifts: its name is export_dates_ and an "
            "integer (id of the export's context), written by the code; no value from a request."
        )
        for sql in (
            'f"DROP TABLE IF EXISTS {name}"',
            'f"CREATE TEMPORARY TABLE {name} " "(participant_id bigint PR',
            'f"ANALYZE {name}"',
        )
    },
    (
        "trialsite/exports/copy_sql.py",
        "raw SQL built by formatting",
        "f\"SET work_mem TO '{SORT_MEMORY}'\"",
    ): ("SET takes no parameters; SORT_MEMORY is the module's constant ('256MB')."),
    **{
        (path, "autoescape off", ""): (
            "A plain-text e-mail (EmailMessage, text/plain): escaping would print &amp; to the "
            "reader, and no browser renders it."
        )
        for path in (
            "templates/outcomes/ae_alert_body.txt",
            "templates/outcomes/ae_alert_subject.txt",
            "templates/outcomes/email/visit_reminder_body.txt",
        )
    },
}


def project_files(*suffixes: str) -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*")):
        parts = path.relative_to(ROOT).parts
        if any(part.startswith(".") or part in SKIPPED_DIRS for part in parts[:-1]):
            continue
        if path.suffix in suffixes and path.is_file():
            yield path


def is_literal(node: ast.AST) -> bool:
    """Text written in the code: a string literal, or the translation of one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    return (
        isinstance(node, ast.Call)
        and callee(node) in TRANSLATIONS
        and bool(node.args)
        and all(is_literal(arg) for arg in node.args)
    )


def callee(call: ast.Call) -> str:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return ""


def crispy_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> crispy class, for the compiling layout objects this module imports."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("crispy_forms"):
            for alias in node.names:
                if alias.name in CRISPY_COMPILED:
                    names[alias.asname or alias.name] = alias.name
    return names


def literal_class_attributes(tree: ast.Module) -> set[str]:
    """Names that every class of the module sets to literal text only (`submit_label =
    _("Record")`): `self.submit_label` is then code, not data."""
    assigned: dict[str, bool] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, ast.Assign):
                    for target in statement.targets:
                        if isinstance(target, ast.Name):
                            literal = is_literal(statement.value)
                            assigned[target.id] = assigned.get(target.id, True) and literal
    return {name for name, literal in assigned.items() if literal}


def python_findings(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line, rule, source of the offending argument) for one module."""
    source = path.read_text()
    tree = ast.parse(source)
    crispy = crispy_names(tree)
    literal_attributes = literal_class_attributes(tree)

    def is_code(arg: ast.AST) -> bool:
        own_literal = (
            isinstance(arg, ast.Attribute)
            and isinstance(arg.value, ast.Name)
            and arg.value.id == "self"
            and arg.attr in literal_attributes
        )
        return own_literal or is_literal(arg)

    def argument(call: ast.Call, position: int) -> ast.AST | None:
        return call.args[position] if len(call.args) > position else None

    for node in ast.walk(tree):
        if isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            if name in SAFE_MARKS:
                yield node.lineno, f"{name} marks text safe", ""
        if not isinstance(node, ast.Call):
            continue
        name = callee(node)
        checks = []
        if name in COMPILERS:
            checks.append((f"{name} compiles", argument(node, 0)))
        if isinstance(node.func, ast.Name) and name in crispy:
            compiled = argument(node, CRISPY_COMPILED[crispy[name]])
            checks.append((f"crispy {crispy[name]} compiles", compiled))
        if name == "format_html":
            checks.append(("format_html format", argument(node, 0)))
            if len(node.args) + len(node.keywords) < 2:
                yield node.lineno, "format_html without arguments marks its text safe", ""
        if name == "format_html_join":
            checks.append(("format_html_join format", argument(node, 1)))
        for rule, arg in checks:
            if arg is not None and not is_code(arg):
                yield node.lineno, rule, ast.get_source_segment(source, arg) or ""
        for keyword in node.keywords:
            if keyword.arg == "autoescape" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is True
            ):
                yield node.lineno, "autoescape off", ""


# Calls that send their SQL to the database as written: the SQL must be a literal, with the
# values passed as parameters, never text formatted into it.
RAW_SQL_CALLS = {"raw", "extra", "execute", "executemany", "RawSQL"}
# Deployed code only: the tests and the benchmarks build SQL from their own table names.
SQL_RULE_SKIPS = {"tests", "bench"}


def is_formatted(node: ast.AST) -> bool:
    """Text made by formatting: an f-string with a value in it, `"..." % x`, `"...".format()`,
    or a concatenation with anything but literals."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return isinstance(node.left, ast.Constant | ast.JoinedStr)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return not (is_literal(node.left) and is_literal(node.right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr == "format"
    if isinstance(node, ast.List | ast.Tuple):
        return any(is_formatted(element) for element in node.elts)
    return False


def formatted_names(tree: ast.Module) -> set[str]:
    """Names the module assigns formatted text to (`sql = f"..."`), anywhere in it."""
    names = set()
    for node in ast.walk(tree):
        value = getattr(node, "value", None)
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign) and value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if is_formatted(value) or isinstance(node, ast.AugAssign):
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def security_findings(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line, rule, source) for what turns a protection off: `csrf_exempt`, and raw SQL built
    by formatting text (injection) in the deployed code."""
    source = path.read_text()
    tree = ast.parse(source)
    relative = path.relative_to(ROOT).parts if path.is_relative_to(ROOT) else ()
    check_sql = not (relative and relative[0] in SQL_RULE_SKIPS)
    formatted = formatted_names(tree)
    for node in ast.walk(tree):
        name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
        imported = isinstance(node, ast.ImportFrom) and any(
            a.name == "csrf_exempt" for a in node.names
        )
        if imported or (isinstance(node, ast.Name | ast.Attribute) and name == "csrf_exempt"):
            yield node.lineno, "csrf_exempt", ""
        if check_sql and isinstance(node, ast.Call) and callee(node) in RAW_SQL_CALLS:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if is_formatted(arg) or (isinstance(arg, ast.Name) and arg.id in formatted):
                    segment = " ".join((ast.get_source_segment(source, arg) or "").split())
                    yield node.lineno, "raw SQL built by formatting", segment[:60]


def test_no_csrf_exemption_and_no_sql_built_by_formatting():
    findings = [
        f"{path.relative_to(ROOT)}:{line}: {rule}" + (f" ({source})" if source else "")
        for path in project_files(".py")
        for line, rule, source in security_findings(path)
        if (str(path.relative_to(ROOT)), rule, source) not in ALLOWED
    ]
    assert findings == [], (
        "Keep Django's CSRF check on every view, and pass values to SQL as parameters "
        "(cursor.execute(sql, [value]), .raw(sql, [value])), or add the place to ALLOWED with "
        "the reason its text is never data:\n" + "\n".join(findings)
    )


def test_the_security_rule_sees_what_it_forbids(tmp_path):
    module = tmp_path / "views.py"
    module.write_text(
        "from django.views.decorators.csrf import csrf_exempt\n"
        "Model.objects.raw(f'SELECT * FROM t WHERE name = {name}')\n"
        "Model.objects.raw('SELECT * FROM t WHERE name = %s', [name])\n"
        "cursor.execute('SELECT * FROM t WHERE id = %s' % pk)\n"
        "cursor.execute('SELECT * FROM t WHERE id = {}'.format(pk))\n"
        "sql = 'SELECT * FROM t WHERE name = ' + name\n"
        "cursor.execute(sql)\n"
        "qs.extra(where=[f'name = {name}'])\n"
        "cursor.execute('SELECT 1 ' + 'FROM t')\n"
    )
    assert sorted((line, rule) for line, rule, _source in security_findings(module)) == [
        (1, "csrf_exempt"),
        (2, "raw SQL built by formatting"),
        (4, "raw SQL built by formatting"),
        (5, "raw SQL built by formatting"),
        (7, "raw SQL built by formatting"),
        (8, "raw SQL built by formatting"),
    ]


def template_findings(path: Path) -> Iterator[tuple[int, str, str]]:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        for rule, pattern in TEMPLATE_RULES.items():
            if pattern.search(line):
                yield number, rule, ""


def all_findings() -> Iterator[tuple[str, int, str, str]]:
    for path in project_files(".py"):
        for line, rule, source in python_findings(path):
            yield str(path.relative_to(ROOT)), line, rule, source
    for path in project_files(".html", ".txt", ".xml"):
        if "templates" in path.relative_to(ROOT).parts:
            for line, rule, source in template_findings(path):
                yield str(path.relative_to(ROOT)), line, rule, source


def test_data_never_reaches_the_template_compiler_or_a_safe_mark():
    findings = list(all_findings())
    unexplained = [
        f"{path}:{line}: {rule}" + (f" ({source})" if source else "")
        for path, line, rule, source in findings
        if (path, rule, source) not in ALLOWED
    ]
    assert unexplained == [], (
        "Escape it instead, render it with {{ }} in a template of our own "
        "(enrollment.layout.TextFieldset for a crispy fieldset), or add the place to ALLOWED "
        "with the reason it is never data:\n" + "\n".join(unexplained)
    )


def test_every_allowed_place_still_exists():
    found = {(path, rule, source) for path, _line, rule, source in all_findings()}
    found |= {
        (str(path.relative_to(ROOT)), rule, source)
        for path in project_files(".py")
        for _line, rule, source in security_findings(path)
    }
    assert set(ALLOWED) - found == set()


def test_the_rule_sees_what_it_forbids(tmp_path):
    module = tmp_path / "sample.py"
    module.write_text(
        "from crispy_forms.layout import HTML, Fieldset, Submit\n"
        "from django.template import Template\n"
        "from django.utils.html import format_html\n"
        "from django.utils.safestring import mark_safe\n"
        "from django.utils.translation import gettext_lazy as _\n"
        "Fieldset(criterion.text, 'a')\n"
        "Fieldset(_('Screening'), 'a')\n"
        "HTML(f'<p>{note}</p>')\n"
        "Template(text).render(context)\n"
        "Template('{% load dosing %}')\n"
        "format_html(f'<b>{name}</b>')\n"
        "format_html('<b>{}</b>', name)\n"
        "mark_safe(name)\n"
        "class F:\n"
        "    label = _('Record')\n"
        "    def __init__(self):\n"
        "        Submit('submit', self.label)\n"
        "        Submit('submit', self.note)\n"
    )
    assert sorted((line, rule) for line, rule, _source in python_findings(module)) == [
        (6, "crispy Fieldset compiles"),
        (8, "crispy HTML compiles"),
        (9, "Template compiles"),
        (11, "format_html format"),
        (11, "format_html without arguments marks its text safe"),
        (13, "mark_safe marks text safe"),
        (18, "crispy Submit compiles"),
    ]
    template = tmp_path / "page.html"
    template.write_text("{{ a }}\n{{ b|safe }}\n{% autoescape off %}{{ c }}{% endautoescape %}\n")
    assert sorted((line, rule) for line, rule, _source in template_findings(template)) == [
        (2, "|safe"),
        (3, "autoescape off"),
    ]
