"""Deterministic shards of a cohort: ``--shard i/N`` picks every N-th unit of the id-sorted list.

The rule depends only on the unit ids, never on discovery order, the machine or the time, so ``N`` jobs
started anywhere (a SLURM array, a Kubernetes indexed job) agree on who does what without talking to each
other. The shards are disjoint and their union is the whole input (``tests/cohort`` proves both).
Round-robin over the sorted ids keeps shard sizes within one unit of each other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from zeroclick.imaging.errors import InvalidInputError

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``. ``Shard(0, 1)`` is the whole cohort."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InvalidInputError(
                f"shard {self.index}/{self.count} is out of range: use i/N with 0 <= i < N "
                "(shards are 0-based, like SLURM_ARRAY_TASK_ID with --array=0-(N-1) and JOB_COMPLETION_INDEX)"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def is_whole(self) -> bool:
        """True when this shard is the whole cohort."""
        return self.count == 1

    @property
    def manifest_name(self) -> str:
        """File name of this shard's manifest inside the output folder."""
        if self.is_whole:
            return "manifest.jsonl"
        width = len(str(self.count - 1))
        return f"manifest.shard-{self.index:0{width}d}-of-{self.count}.jsonl"


def parse_shard(text: str | None) -> Shard:
    """Parse ``"i/N"`` (0-based) into a :class:`Shard`; ``None`` or ``""`` is the whole cohort.

    >>> parse_shard("2/8")
    Shard(index=2, count=8)
    """
    if not text:
        return Shard(0, 1)
    match = _SHARD_RE.match(text)
    if not match:
        raise InvalidInputError(f"--shard must look like i/N (for example 0/4), got {text!r}")
    return Shard(int(match.group(1)), int(match.group(2)))


def select_shard(ids: Sequence[str], shard: Shard) -> list[str]:
    """The ids that belong to ``shard``, in sorted order.

    Ids must be unique; every id lands in exactly one of the ``shard.count`` shards.
    """
    ordered = sorted(ids)
    if len(set(ordered)) != len(ordered):
        raise InvalidInputError("unit ids must be unique to be sharded; give duplicates distinct ids in the CSV")
    return ordered[shard.index :: shard.count]
