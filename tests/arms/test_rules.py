"""Randomization rules: no database."""

import random
import secrets
from collections import Counter

import pytest

from arms import rules

RATIOS = {"STD": 1, "PAX": 1, "MSC": 1}
SIZES = [3, 6]
STRATA = rules.strata_for(
    site_codes=["WUH", "SHE"], stratify_by_site=True, severity_strata=["severe", "critical"]
)


def test_strata_are_site_by_severity_from_the_protocol_values():
    assert [k.code for k in STRATA] == ["SHE-severe", "SHE-critical", "WUH-severe", "WUH-critical"]


def test_without_site_stratification_the_strata_are_the_severities():
    keys = rules.strata_for(site_codes=["SHE"], stratify_by_site=False, severity_strata=["a", "b"])
    assert [k.code for k in keys] == ["a", "b"]
    assert {k.site_code for k in keys} == {None}


def generated(per_stratum=200, rng=None, ratios=RATIOS, sizes=SIZES):
    return rules.generate(
        strata=STRATA,
        ratios=ratios,
        block_sizes=sizes,
        per_stratum=per_stratum,
        rng=rng or secrets.SystemRandom(),
    )


def test_every_complete_block_has_the_exact_ratio_and_a_size_from_the_set():
    entries = generated()
    blocks = {}
    for e in entries:
        blocks.setdefault((e.stratum, e.block), []).append(e)
    assert len(blocks) > 4 * 200 / 6
    for members in blocks.values():
        size = len(members)
        assert size in SIZES
        assert {m.block_size for m in members} == {size}
        assert Counter(m.arm for m in members) == {arm: size // 3 for arm in RATIOS}


def test_both_block_sizes_are_drawn():
    sizes = Counter(e.block_size for e in generated())
    assert set(sizes) == {3, 6}


def test_each_stratum_is_complete_blocks_reaching_at_least_n_in_sequence():
    entries = generated(per_stratum=100)
    for key in STRATA:
        rows = [e for e in entries if e.stratum == key.code]
        assert 100 <= len(rows) <= 105
        assert [e.sequence for e in rows] == list(range(1, len(rows) + 1))
        assert Counter(e.arm for e in rows) == {arm: len(rows) // 3 for arm in RATIOS}


def test_an_unequal_ratio_is_honoured_in_every_block():
    ratios = {"A": 2, "B": 1}
    entries = generated(ratios=ratios, sizes=[3, 6, 9])
    for block in {(e.stratum, e.block) for e in entries}:
        counts = Counter(e.arm for e in entries if (e.stratum, e.block) == block)
        assert counts["A"] == 2 * counts["B"]


def test_two_generations_differ():
    assert generated() != generated()


def test_a_seeded_generator_repeats_so_the_difference_comes_from_the_source():
    assert generated(rng=random.Random(7)) == generated(rng=random.Random(7))  # noqa: S311


def test_block_sizes_that_do_not_fit_the_ratio_are_refused():
    assert rules.block_size_errors(RATIOS, [3, 4]) == [
        "Block size 4 is not a multiple of 3, the sum of the ratio."
    ]
    with pytest.raises(ValueError, match="Block size 4"):
        generated(sizes=[4])


# --- The fingerprint ---------------------------------------------------------------------------


def test_the_hash_ignores_the_order_entries_come_in():
    entries = generated(per_stratum=30)
    assert rules.list_sha256(entries) == rules.list_sha256(list(reversed(entries)))


@pytest.mark.parametrize("field", ["arm", "sequence", "stratum", "block", "block_size"])
def test_altering_one_entry_changes_the_hash(field):
    entries = generated(per_stratum=30)
    original = rules.list_sha256(entries)
    e = entries[10]
    changed = {
        "arm": "PAX" if e.arm != "PAX" else "STD",
        "sequence": 999,
        "stratum": "WUH-critical" if e.stratum != "WUH-critical" else "SHE-severe",
        "block": e.block + 100,
        "block_size": 9,
    }[field]
    altered = [*entries[:10], rules.Entry(**{**e.__dict__, field: changed}), *entries[11:]]
    assert rules.list_sha256(altered) != original
    assert len(original) == 64


# --- The report ---------------------------------------------------------------------------------


def test_the_report_of_a_generated_list_is_clean():
    entries = generated(per_stratum=60)
    reports = rules.list_report(
        entries, strata=[k.code for k in STRATA], ratios=RATIOS, block_sizes=SIZES
    )
    assert [r.stratum for r in reports] == [k.code for k in STRATA]
    for report in reports:
        assert report.ok, report.problems
        assert report.entries == sum(report.arm_counts.values())
        assert report.blocks == sum(report.block_sizes.values())


def test_the_report_names_a_block_out_of_ratio_and_a_size_not_allowed():
    entries = [
        rules.Entry("S", 1, "STD", 1, 3),
        rules.Entry("S", 2, "STD", 1, 3),
        rules.Entry("S", 3, "MSC", 1, 3),
        rules.Entry("S", 4, "STD", 2, 2),
        rules.Entry("S", 5, "PAX", 2, 2),
    ]
    [report] = rules.list_report(entries, strata=["S"], ratios=RATIOS, block_sizes=SIZES)
    assert report.problems == [
        "Block 1 is not in the ratio: MSC 1, STD 2.",
        "Block 2 has size 2, not one of 3, 6.",
        "Block 2 is not in the ratio: PAX 1, STD 1.",
    ]
    assert report.arm_counts == {"STD": 3, "PAX": 1, "MSC": 1}


def test_the_report_says_when_a_stratum_has_no_entries():
    [report] = rules.list_report([], strata=["S"], ratios=RATIOS, block_sizes=SIZES)
    assert report.problems == ["No entries."]


# --- The statistician's CSV ---------------------------------------------------------------------

HEADER = "stratum,sequence,arm,block,block_size\n"


def parse(text, strata=("A", "B")):
    return rules.parse_list_csv(text, arm_codes=RATIOS, stratum_codes=strata)


def test_a_good_file_gives_its_entries_and_no_error():
    text = HEADER + "A,1,STD,1,3\nA,2,MSC,1,3\nA,3,PAX,1,3\nB,1,PAX,1,3\nB,2,STD,1,3\nB,3,MSC,1,3\n"
    entries, errors = parse(text)
    assert errors == []
    assert entries[0] == rules.Entry("A", 1, "STD", 1, 3)
    assert len(entries) == 6


def test_a_bad_file_is_rejected_whole_with_line_numbered_errors():
    text = HEADER + (
        "A,1,STD,1,3\n"  # line 2, fine
        "A,2,XYZ,1,3\n"  # line 3: unknown arm
        "C,1,STD,1,3\n"  # line 4: unknown stratum
        "A,1,PAX,1,3\n"  # line 5: duplicate of line 2
        "A,five,PAX,1,3\n"  # line 6: not a number
        "B,1,STD,1,3\n"  # line 7
        "B,3,MSC,1,3\n"  # line 8: 2 is missing
    )
    entries, errors = parse(text)
    assert entries == []
    assert errors == [
        "Line 3: unknown arm 'XYZ'.",
        "Line 4: unknown stratum 'C'.",
        "Line 5: sequence 1 of stratum A is already on line 2.",
        "Line 6: sequence 'five' is not a whole number of 1 or more.",
        "Line 8: sequence 3 of stratum B, but 2 is missing.",
    ]


def test_a_file_without_the_columns_is_rejected_on_line_one():
    assert parse("stratum,arm\nA,STD\n") == (
        [],
        ["Line 1: the header lacks the column(s) sequence, block, block_size."],
    )


def test_a_stratum_of_the_protocol_missing_from_the_file_is_an_error():
    entries, errors = parse(HEADER + "A,1,STD,1,3\n")
    assert (entries, errors) == ([], ["Stratum B has no entries."])


# --- Balance ------------------------------------------------------------------------------------


def test_balance_against_the_ratio_and_the_largest_imbalance():
    row = rules.balance("SHE-severe", {"STD": 5, "PAX": 3, "MSC": 4}, RATIOS)
    assert row.total == 12
    assert row.expected == {"STD": 4.0, "PAX": 4.0, "MSC": 4.0}
    assert row.imbalance == 1.0


@pytest.mark.parametrize(
    "remaining,total,low", [(10, 100, False), (9, 100, True), (0, 100, True), (0, 0, False)]
)
def test_low_stock_is_under_ten_percent(remaining, total, low):
    assert rules.is_low(remaining=remaining, total=total) is low
