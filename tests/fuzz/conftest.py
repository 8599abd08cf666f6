"""Counts of the fuzz tests, printed in the pytest summary (cases tried, named errors, warnings, other, hangs)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.fuzz.fuzzcounts import FUZZ_COUNTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FUZZ_COUNTS:
        return
    total: Counter[str] = Counter()
    terminalreporter.section("zeroclick fuzz counts")
    for target, counts in sorted(FUZZ_COUNTS.items()):
        if target == "reject_codes":  # not cases: the named rejection codes the cases reached
            terminalreporter.write_line("rejections by code: " + json.dumps(dict(counts.most_common())))
            continue
        total.update(counts)
        terminalreporter.write_line(f"{target:12s} tried {sum(counts.values()):4d}  " + _line(counts))
    terminalreporter.write_line(f"{'all':12s} tried {sum(total.values()):4d}  " + _line(total))


def _line(counts: Counter[str]) -> str:
    """Outcome counts, with the two that must stay zero always shown."""
    shown = {"other_exception": 0, "hang": 0, **counts}
    return json.dumps(dict(sorted(shown.items())))
