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
        terminalreporter.write_line(f"{target:12s} tried {sum(counts.values()):4d}  " + json.dumps(dict(sorted(counts.items()))))
    terminalreporter.write_line(f"{'all':12s} tried {sum(total.values()):4d}  " + json.dumps(dict(sorted(total.items()))))
