"""Outcome counts of the fuzz tests (shared by the tests and the summary hook in conftest.py)."""

from __future__ import annotations

from collections import Counter

#: target (``scan_file``, ``scan_series``, ``cmr_run``, ``cmr_cli``...) -> outcome -> count
FUZZ_COUNTS: dict[str, Counter[str]] = {}


def record(target: str, outcome: str) -> None:
    FUZZ_COUNTS.setdefault(target, Counter())[outcome] += 1
