"""Read a wapiti JSON report: print every finding, and fail on one above low (medium, high,
critical) that docs/security.md does not explain.

An explanation is a line of docs/security.md's list of accepted scanner findings:
    - wapiti `<category>` on `<path pattern>`: why it is not a vulnerability here
(the category as wapiti names it, the path a shell pattern: `/participants/*`).
wapiti 3.0.4 does not know Django's token name (csrfmiddlewaretoken) and reports forms as
lacking one: given the running app and the scan's cookies, each such form is posted again
without its token, and the finding stands unless Django refuses it (403).
Usage: python .ci/wapiti_findings.py report.json docs/security.md [base-url cookies.json]
"""

import fnmatch
import json
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

LEVELS = {0: "info", 1: "low", 2: "medium", 3: "high", 4: "critical"}
ACCEPTED = re.compile(r"^- wapiti `(?P<category>[^`]+)` on `(?P<path>[^`]+)`: \S")


def accepted_findings(security_md: str) -> list[tuple[str, str]]:
    return [
        (m["category"], m["path"])
        for line in Path(security_md).read_text(encoding="utf-8").splitlines()
        if (m := ACCEPTED.match(line.strip()))
    ]


CSRF = "Cross Site Request Forgery"


def refused_without_token(item: dict, base: str, cookie_file: str) -> bool:
    """Post the form again, logged in, without its CSRF token: True if Django says 403."""
    cookies = json.loads(Path(cookie_file).read_text())["127.0.0.1"]["/"]
    body = item["http_request"].split("\n\n", 1)[-1].strip()
    fields = [(k, v) for k, v in parse_qsl(body) if k != "csrfmiddlewaretoken"]
    request = urllib.request.Request(  # noqa: S310 - the app under test on 127.0.0.1
        base + item["path"],
        data=urlencode(fields).encode(),
        headers={
            "Cookie": "; ".join(f"{n}={c['value']}" for n, c in cookies.items()),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    try:
        urllib.request.urlopen(request)  # noqa: S310 - the app under test on 127.0.0.1
    except urllib.error.HTTPError as error:
        return error.code == 403
    return False


def findings(report: dict):
    for section in ("vulnerabilities", "anomalies"):
        for category, items in (report.get(section) or {}).items():
            for item in items:
                yield category, int(item.get("level") or 0), item


def main(report_path: str, security_md: str, base: str = "", cookie_file: str = "") -> int:
    report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    accepted = accepted_findings(security_md)
    print(f"{report.get('infos', {}).get('version', 'wapiti')} on {report['infos']['target']}")
    unexplained = []
    for category, level, item in findings(report):
        path = urlsplit(item.get("path") or "").path or item.get("path", "")
        where = f"{item.get('method', '')} {path} {item.get('parameter') or ''}".strip()
        explained = any(
            category == c and fnmatch.fnmatchcase(path, pattern) for c, pattern in accepted
        )
        if explained and category == CSRF:
            explained = bool(base) and refused_without_token(item, base, cookie_file)
            where += " (refused without its token)" if explained else " (NOT refused)"
        mark = "explained" if explained else ("FAIL" if level >= 2 else "ok")
        print(f"  [{LEVELS.get(level, level)}] {category}: {where} ({mark})")
        print(f"      {item.get('info', '')[:300]}")
        if level >= 2 and not explained:
            unexplained.append(f"{category}: {where}")
    if unexplained:
        print(
            "\nFindings above low that docs/security.md does not explain (fix them, or add "
            "'- wapiti `<category>` on `<path>`: why' to its accepted scanner findings):"
        )
        print("\n".join(f"  {u}" for u in unexplained))
        return 1
    print("No finding above low that docs/security.md does not explain.")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
