"""The CONSORT diagram laid out for the SVG template: boxes of text lines and their places.

Only plain strings and numbers leave here; the template writes them, escaped, into the file.
"""

from __future__ import annotations

from django.utils.translation import gettext as _

from outcomes.models import EndReason

from .rules import Consort

LINE = 18  # px between lines of text
PAD = 12  # px inside a box, above and below the lines
GAP = 28  # px between boxes, for the arrows
COLUMN = 300  # px width of a box
MARGIN = 20


def _box(x: int, y: int, lines: list[str], *, width: int = COLUMN, rows: int = 0) -> dict:
    height = 2 * PAD + LINE * max(len(lines), rows)
    return {
        "x": x,
        "y": y,
        "width": width,
        "height": height,
        "bottom": y + height,
        "centre": x + width // 2,
        "lines": [
            {"text": text, "y": y + PAD + LINE * (i + 1) - 4} for i, text in enumerate(lines)
        ],
    }


def _arrow(x1: int, y1: int, x2: int, y2: int) -> dict:
    return {"x1": x1, "y1": y1, "x2": x2, "y2": y2}


def top_lines(consort: Consort) -> tuple[list[str], list[str], list[str]]:
    assessed = [_("Assessed for eligibility (n=%(n)s)") % {"n": consort.assessed}]
    not_randomized = [_("Not randomized (n=%(n)s)") % {"n": consort.not_randomized}]
    not_randomized.append(_("Not eligible (n=%(n)s)") % {"n": consort.excluded})
    not_randomized += [
        _("  failed %(code)s (n=%(n)s)") % {"code": code, "n": n} for code, n in consort.reasons
    ]
    not_randomized.append(_("Declined consent (n=%(n)s)") % {"n": consort.declined})
    not_randomized.append(_("Withdrew before randomization (n=%(n)s)") % {"n": consort.other})
    not_randomized.append(_("Awaiting a decision (n=%(n)s)") % {"n": consort.pending})
    randomized = [_("Randomized (n=%(n)s)") % {"n": consort.randomized}]
    return assessed, not_randomized, randomized


def arm_lines(arm) -> tuple[list[str], list[str], list[str]]:
    allocation = [
        _("Allocated to %(arm)s (n=%(n)s)") % {"arm": arm.name, "n": arm.allocated},
        _("Received the allocated intervention (n=%(n)s)") % {"n": arm.received},
        _("Did not receive it (n=%(n)s)") % {"n": arm.not_received_total},
    ]
    if not arm.has_intervention:
        allocation.insert(2, _("  (no study intervention: counted as received)"))
    allocation += [f"  {label} (n={n})" for _key, label, n in arm.not_received_rows]
    follow_up = [
        _("Lost to follow-up (n=%(n)s)") % {"n": arm.lost},
        _("Discontinued (n=%(n)s)") % {"n": arm.discontinued_total},
    ]
    follow_up += [
        f"  {reason_label(reason)} (n={n})" for reason, n in sorted(arm.discontinued.items())
    ]
    follow_up.append(_("Still in follow-up (n=%(n)s)") % {"n": arm.ongoing})
    analysis = [
        _("Analysed (n=%(n)s)") % {"n": arm.analysed_total},
        _("  completed day 28 (n=%(n)s)") % {"n": arm.analysed["completed"]},
        _("  died (n=%(n)s)") % {"n": arm.analysed["died"]},
    ]
    return allocation, follow_up, analysis


def reason_label(reason: str) -> str:
    if reason == "withdrawal":
        return _("Withdrawal recorded")
    return str(EndReason(reason).label)


def layout(consort: Consort) -> dict:
    columns = max(len(consort.arms), 1)
    width = max(2 * MARGIN + columns * COLUMN + (columns - 1) * MARGIN, 2 * MARGIN + 2 * COLUMN)
    mid = width // 2
    assessed, not_randomized, randomized = top_lines(consort)
    boxes = [_box(mid - COLUMN // 2, MARGIN, assessed)]
    side = _box(mid - COLUMN // 2, boxes[0]["bottom"] + GAP, not_randomized)
    boxes.append(side)
    boxes.append(_box(mid - COLUMN // 2, side["bottom"] + GAP, randomized))
    top = boxes[-1]["bottom"] + 2 * GAP
    arrows = [
        _arrow(mid, boxes[0]["bottom"], mid, side["y"]),
        _arrow(mid, side["bottom"], mid, boxes[2]["y"]),
    ]
    stages = [arm_lines(arm) for arm in consort.arms]
    # Each stage's boxes as tall as its tallest, so that the arms' stages line up.
    tallest = [max((len(lines[k]) for lines in stages), default=1) for k in range(3)]
    bottom = top
    for i, lines_of_arm in enumerate(stages):
        x = MARGIN + i * (COLUMN + MARGIN)
        arrows.append(_arrow(mid, boxes[2]["bottom"], x + COLUMN // 2, top))
        y = top
        for k, lines in enumerate(lines_of_arm):
            box = _box(x, y, lines, rows=tallest[k])
            boxes.append(box)
            y = box["bottom"] + GAP
            arrows.append(_arrow(box["centre"], box["bottom"], box["centre"], y))
        arrows.pop()  # no arrow below the analysis box
        bottom = max(bottom, y)
    return {"width": width, "height": bottom + MARGIN, "boxes": boxes, "arrows": arrows}
