"""Randomization as pure functions: strata, permuted blocks, the list's fingerprint, the
statistician's CSV, the balance of allocations. No request, no ORM; the protocol's values
(arms and ratios, block sizes, strata) come in as arguments.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

# Fewer than this share of a stratum's entries left: the randomizer and the administrator
# are warned, so that the list is extended before it runs out.
LOW_STOCK_SHARE = 0.10
CSV_COLUMNS = ("stratum", "sequence", "arm", "block", "block_size")


@dataclass(frozen=True)
class StratumKey:
    """One stratum: a site (or every site, when the protocol does not stratify by site)
    crossed with a severity."""

    site_code: str | None
    severity: str

    @property
    def code(self) -> str:
        return f"{self.site_code}-{self.severity}" if self.site_code else self.severity


@dataclass(frozen=True)
class Entry:
    """One line of a randomization list."""

    stratum: str
    sequence: int
    arm: str
    block: int
    block_size: int


def strata_for(
    *, site_codes: Iterable[str], stratify_by_site: bool, severity_strata: Sequence[str]
) -> list[StratumKey]:
    """The protocol's strata, in a stable order: site x severity, or severity alone."""
    sites: list[str | None] = sorted(site_codes) if stratify_by_site else [None]
    return [StratumKey(site, severity) for site in sites for severity in severity_strata]


def block_size_errors(ratios: Mapping[str, int], block_sizes: Sequence[int]) -> list[str]:
    """Why these block sizes cannot carry this ratio; empty when they can."""
    unit = sum(ratios.values())
    if not ratios:
        return [_("The protocol has no arms.")]
    if not block_sizes:
        return [_("The protocol has no block sizes.")]
    return [
        _("Block size %(size)s is not a multiple of %(unit)s, the sum of the ratio.")
        % {"size": size, "unit": unit}
        for size in block_sizes
        if size <= 0 or size % unit
    ]


def permuted_block(ratios: Mapping[str, int], size: int, rng: random.Random) -> list[str]:
    """One block: each arm `ratio x size / sum(ratio)` times, in random order."""
    multiplier = size // sum(ratios.values())
    block = [arm for arm, ratio in ratios.items() for _ in range(ratio * multiplier)]
    rng.shuffle(block)
    return block


def stratum_entries(
    *,
    stratum: str,
    ratios: Mapping[str, int],
    block_sizes: Sequence[int],
    minimum: int,
    rng: random.Random,
) -> list[Entry]:
    """Complete blocks, each of a size drawn from `block_sizes`, until at least `minimum`
    entries: a list never ends in a partial block, so it may run a few entries over."""
    errors = block_size_errors(ratios, block_sizes)
    if errors:
        raise ValueError("; ".join(errors))
    entries: list[Entry] = []
    block_number = 0
    while len(entries) < minimum:
        block_number += 1
        size = rng.choice(list(block_sizes))
        for arm in permuted_block(ratios, size, rng):
            entries.append(Entry(stratum, len(entries) + 1, arm, block_number, size))
    return entries


def generate(
    *,
    strata: Sequence[StratumKey],
    ratios: Mapping[str, int],
    block_sizes: Sequence[int],
    per_stratum: int,
    rng: random.Random,
) -> list[Entry]:
    """A whole list. Pass `secrets.SystemRandom()`: a seeded generator is for tests only."""
    return [
        entry
        for key in strata
        for entry in stratum_entries(
            stratum=key.code,
            ratios=ratios,
            block_sizes=block_sizes,
            minimum=per_stratum,
            rng=rng,
        )
    ]


# --- The fingerprint -------------------------------------------------------------------------


def canonical_text(entries: Iterable[Entry]) -> str:
    """The list as one text, ordered by stratum and sequence, whatever order it came in:
    the same list always gives the same text, so the same hash."""
    lines = [",".join(CSV_COLUMNS)]
    for e in sorted(entries, key=lambda e: (e.stratum, e.sequence)):
        lines.append(f"{e.stratum},{e.sequence},{e.arm},{e.block},{e.block_size}")
    return "\n".join(lines) + "\n"


def list_sha256(entries: Iterable[Entry]) -> str:
    return hashlib.sha256(canonical_text(entries).encode()).hexdigest()


# --- The report before use ---------------------------------------------------------------------


@dataclass
class StratumReport:
    stratum: str
    entries: int
    arm_counts: dict[str, int]
    blocks: int
    block_sizes: dict[int, int]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def list_report(
    entries: Iterable[Entry],
    *,
    strata: Sequence[str],
    ratios: Mapping[str, int],
    block_sizes: Sequence[int],
) -> list[StratumReport]:
    """Per stratum: entries, arm counts, blocks; and every block that is not complete, not
    of an allowed size, or not in the exact ratio."""
    by_stratum: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        by_stratum[e.stratum].append(e)
    unit = sum(ratios.values())
    reports = []
    for code in strata:
        rows = sorted(by_stratum.get(code, []), key=lambda e: e.sequence)
        blocks: dict[int, list[Entry]] = defaultdict(list)
        for e in rows:
            blocks[e.block].append(e)
        problems = []
        if not rows:
            problems.append(_("No entries."))
        sizes: Counter[int] = Counter()
        for number, members in blocks.items():
            declared = {m.block_size for m in members}
            size = len(members)
            sizes[size] += 1
            if declared != {size}:
                problems.append(
                    _("Block %(block)s has %(n)s entries but declares size %(declared)s.")
                    % {
                        "block": number,
                        "n": size,
                        "declared": "/".join(map(str, sorted(declared))),
                    }
                )
            if size not in block_sizes:
                problems.append(
                    _("Block %(block)s has size %(size)s, not one of %(allowed)s.")
                    % {
                        "block": number,
                        "size": size,
                        "allowed": ", ".join(map(str, block_sizes)),
                    }
                )
            counts = Counter(m.arm for m in members)
            expected = {arm: ratio * size // unit for arm, ratio in ratios.items()}
            if size % unit or dict(counts) != {a: n for a, n in expected.items() if n}:
                problems.append(
                    _("Block %(block)s is not in the ratio: %(counts)s.")
                    % {"block": number, "counts": _format_counts(counts)}
                )
            sequences = [m.sequence for m in members]
            if sequences != list(range(sequences[0], sequences[0] + size)):
                problems.append(
                    _("Block %(block)s is not consecutive in the sequence.") % {"block": number}
                )
        reports.append(
            StratumReport(
                stratum=code,
                entries=len(rows),
                arm_counts={arm: sum(1 for e in rows if e.arm == arm) for arm in ratios},
                blocks=len(blocks),
                block_sizes=dict(sorted(sizes.items())),
                problems=problems,
            )
        )
    return reports


def _format_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{arm} {n}" for arm, n in sorted(counts.items()))


# --- The statistician's CSV ----------------------------------------------------------------------


def parse_list_csv(
    text: str, *, arm_codes: Iterable[str], stratum_codes: Iterable[str]
) -> tuple[list[Entry], list[str]]:
    """Entries from a CSV with the columns stratum, sequence, arm, block, block_size; and
    every error, with its line number. Any error rejects the whole file (the caller keeps
    nothing); the entries are returned only when there is none."""
    arms = set(arm_codes)
    strata = list(stratum_codes)
    errors: list[str] = []
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        return [], [
            _("Line 1: the header lacks the column(s) %(columns)s.")
            % {"columns": ", ".join(missing)}
        ]
    entries: list[Entry] = []
    seen: dict[tuple[str, int], int] = {}
    lines_of: dict[tuple[str, int], int] = {}
    for line, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        stratum, arm = row["stratum"], row["arm"]
        line_errors = []
        if stratum not in strata:
            line_errors.append(_("unknown stratum '%(value)s'") % {"value": stratum})
        if arm not in arms:
            line_errors.append(_("unknown arm '%(value)s'") % {"value": arm})
        numbers = {}
        for column in ("sequence", "block", "block_size"):
            try:
                numbers[column] = int(row[column])
                if numbers[column] < 1:
                    raise ValueError
            except ValueError:
                line_errors.append(
                    _("%(column)s '%(value)s' is not a whole number of 1 or more")
                    % {"column": column, "value": row[column]}
                )
        if "sequence" in numbers:
            key = (stratum, numbers["sequence"])
            if key in seen:
                line_errors.append(
                    _("sequence %(seq)s of stratum %(stratum)s is already on line %(line)s")
                    % {"seq": key[1], "stratum": stratum, "line": seen[key]}
                )
            else:
                seen[key] = line
                lines_of[key] = line
        if line_errors:
            errors.append(
                _("Line %(line)s: %(errors)s.") % {"line": line, "errors": "; ".join(line_errors)}
            )
            continue
        entries.append(
            Entry(stratum, numbers["sequence"], arm, numbers["block"], numbers["block_size"])
        )
    if not entries and not errors:
        errors.append(_("The file has no entries."))
    by_stratum: dict[str, set[int]] = defaultdict(set)
    for stratum, sequence in seen:
        by_stratum[stratum].add(sequence)
    for stratum in strata:
        sequences = by_stratum.get(stratum, set())
        if not sequences:
            errors.append(_("Stratum %(stratum)s has no entries.") % {"stratum": stratum})
            continue
        for gap in sorted(set(range(1, max(sequences) + 1)) - sequences):
            after = min(s for s in sequences if s > gap)
            errors.append(
                _("Line %(line)s: sequence %(seq)s of stratum %(stratum)s, but %(gap)s is missing.")
                % {"line": lines_of[(stratum, after)], "seq": after, "stratum": stratum, "gap": gap}
            )
    return ([] if errors else entries), errors


# --- Balance ------------------------------------------------------------------------------------


@dataclass
class BalanceRow:
    label: str
    allocated: dict[str, int]
    expected: dict[str, float]

    @property
    def total(self) -> int:
        return sum(self.allocated.values())

    @property
    def imbalance(self) -> float:
        """The largest distance of an arm from its expected count."""
        return max((abs(self.allocated[a] - self.expected[a]) for a in self.allocated), default=0)


def balance(label: str, counts: Mapping[str, int], ratios: Mapping[str, int]) -> BalanceRow:
    total = sum(counts.get(arm, 0) for arm in ratios)
    unit = sum(ratios.values())
    return BalanceRow(
        label=label,
        allocated={arm: counts.get(arm, 0) for arm in ratios},
        expected={arm: total * ratio / unit for arm, ratio in ratios.items()},
    )


def is_low(*, remaining: int, total: int) -> bool:
    return total > 0 and remaining < total * LOW_STOCK_SHARE
