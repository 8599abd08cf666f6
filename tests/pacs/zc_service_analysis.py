"""Stand-in analyses for the service tests: one that fails until a marker file exists (permanent or transient)."""

from __future__ import annotations

import os
from pathlib import Path

from zc_threshold_analysis import analyse

from zeroclick.imaging.errors import InvalidInputError


def _count(name: str) -> None:
    calls = os.environ.get("ZC_TEST_CALLS")
    if calls:
        with open(calls, "a") as fh:
            fh.write(name + "\n")


def fails_until_fixed(in_dir: Path, out_dir: Path) -> list[Path]:
    """An input error (permanent) until ``$ZC_TEST_FIXED`` exists, then the threshold analysis."""
    _count("permanent")
    if not Path(os.environ["ZC_TEST_FIXED"]).exists():
        raise InvalidInputError("no short-axis cine in this study (test)")
    return analyse(in_dir, out_dir)


def transient(in_dir: Path, out_dir: Path) -> list[Path]:
    """A transient failure every time (an I/O error)."""
    _count("transient")
    raise OSError("scratch disk unavailable (test)")


def allocator_probe(in_dir: Path, out_dir: Path) -> list[Path]:
    """Records whether jemalloc is mapped into this worker process, then the threshold analysis."""
    maps = Path("/proc/self/maps").read_text()
    Path(os.environ["ZC_TEST_ALLOCATOR"]).write_text("jemalloc" if "libjemalloc" in maps else "system")
    return analyse(in_dir, out_dir)
