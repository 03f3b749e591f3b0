"""Read bandit's JSON report: fail on a medium or high finding that is explained neither where
it stands (`# nosec Bxxx: why`, which bandit itself honours) nor in docs/security.md's list of
accepted scanner findings, one a line:
    - bandit `<test id>` in `<path>`: why it is not a vulnerability here
Usage: python .ci/bandit_findings.py bandit.json docs/security.md
"""

import json
import re
import sys
from pathlib import Path

ACCEPTED = re.compile(r"^- bandit `(?P<test>B\d+)` in `(?P<path>[^`]+)`: \S")


def main(report_path: str, security_md: str) -> int:
    report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    if report.get("errors"):
        print(f"bandit could not read: {report['errors']}")
        return 1
    accepted = {
        (m["test"], m["path"])
        for line in Path(security_md).read_text(encoding="utf-8").splitlines()
        if (m := ACCEPTED.match(line.strip()))
    }
    unexplained = []
    for result in report.get("results", []):
        if result["issue_severity"] not in ("MEDIUM", "HIGH"):
            continue
        path = result["filename"].removeprefix("./")
        where = f"{path}:{result['line_number']} {result['test_id']} {result['issue_text']}"
        explained = (result["test_id"], path) in accepted
        mark = "explained" if explained else "FAIL"
        print(f"  [{result['issue_severity'].lower()}] {where} ({mark})")
        if not explained:
            unexplained.append(where)
    totals = report.get("metrics", {}).get("_totals", {})
    print(f"bandit: {totals.get('loc', '?')} lines scanned")
    if unexplained:
        print(
            "Medium or high findings with no explanation: fix them, or explain them where they "
            "stand (# nosec Bxxx: why) or in docs/security.md (- bandit `Bxxx` in `path`: why)."
        )
        return 1
    print("No medium or high finding without its explanation.")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
