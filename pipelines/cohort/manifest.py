"""``manifest.jsonl``: one JSON row per unit, appended as units finish and compacted at the end of a run.

Each row says what happened to one unit: ``id``, ``status`` (``ok`` or ``failed``), ``outputs`` (paths
relative to the output folder), ``seconds``, ``weights_id``, ``version`` and ``error`` (``null`` when ok),
plus the input path, kind, shard, backend, worker, warnings, a small summary and the finishing time.
Rows are appended and flushed one by one, so a run that dies keeps every row it finished; ``--resume``
reads every ``manifest*.jsonl`` of the folder (all shards) and the last row of an id wins.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

Status = Literal["ok", "failed"]
MANIFEST_GLOB = "manifest*.jsonl"


@dataclass(frozen=True)
class ManifestRow:
    """What happened to one unit. ``error`` is ``"ErrorType: message"`` when ``status == "failed"``."""

    id: str
    status: Status
    outputs: tuple[str, ...]
    seconds: float
    weights_id: str
    version: str
    error: str | None = None
    input: str = ""
    kind: str = ""
    shard: str = "0/1"
    backend: str = "local"
    worker: str = ""
    warnings: tuple[str, ...] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)
    finished_utc: str = ""

    @property
    def ok(self) -> bool:
        """True when the unit finished and its outputs were published."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the documented keys first."""
        d = asdict(self)
        d["outputs"] = list(self.outputs)
        d["warnings"] = list(self.warnings)
        d["summary"] = dict(self.summary)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ManifestRow:
        """Inverse of :meth:`to_dict`; unknown keys (from newer versions) are ignored."""
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in d.items() if k in known}
        kwargs["outputs"] = tuple(kwargs.get("outputs") or ())
        kwargs["warnings"] = tuple(kwargs.get("warnings") or ())
        kwargs["summary"] = dict(kwargs.get("summary") or {})
        return cls(**kwargs)

    def is_current(self, out_dir: Path, *, weights_id: str, version: str) -> bool:
        """True when this row is a finished unit made with these weights and version whose outputs still exist."""
        return (
            self.ok
            and self.weights_id == weights_id
            and self.version == version
            and bool(self.outputs)
            and all((out_dir / o).is_file() for o in self.outputs)
        )


def _rows_from(path: Path) -> Iterator[ManifestRow]:
    with path.open() as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield ManifestRow.from_dict(json.loads(line))
            except (ValueError, TypeError):
                # A run killed mid-write leaves at most one torn last line; that unit simply runs again.
                logger.warning("%s line %d is not a manifest row; ignored", path.name, number)


def read_manifests(out_dir: Path) -> dict[str, ManifestRow]:
    """Latest row per unit id over every ``manifest*.jsonl`` in ``out_dir`` (all shards).

    Within a file the last row wins; across files, an ``ok`` row wins over a ``failed`` one and otherwise
    the later ``finished_utc``.
    """
    latest: dict[str, ManifestRow] = {}
    for path in sorted(out_dir.glob(MANIFEST_GLOB)):
        per_file: dict[str, ManifestRow] = {}
        for row in _rows_from(path):
            per_file[row.id] = row
        for uid, row in per_file.items():
            old = latest.get(uid)
            if old is None or (row.ok, row.finished_utc) >= (old.ok, old.finished_utc):
                latest[uid] = row
    return latest


def ids_in(path: Path) -> set[str]:
    """Unit ids that already have a row in one manifest file."""
    return {row.id for row in _rows_from(path)} if path.exists() else set()


class ManifestWriter:
    """Appends rows to one manifest file, flushing and syncing each so a crash loses no finished unit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = path.open("a")

    def append(self, row: ManifestRow) -> None:
        """Append one row and make it durable."""
        self._fh.write(json.dumps(row.to_dict(), sort_keys=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compact_manifest(path: Path, order: Iterable[str]) -> list[ManifestRow]:
    """Rewrite ``path`` atomically with one row per id: ids in ``order`` first, then any others it held.

    Returns the rows written.
    """
    rows: dict[str, ManifestRow] = {}
    if path.exists():
        for row in _rows_from(path):
            rows[row.id] = row
    ordered = [rows.pop(uid) for uid in order if uid in rows]
    ordered.extend(rows[uid] for uid in sorted(rows))
    write_manifest(path, ordered)
    return ordered


def write_manifest(path: Path, rows: Iterable[ManifestRow]) -> None:
    """Write ``rows`` to ``path`` atomically (temporary name, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row.to_dict(), sort_keys=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def merge_manifests(out_dir: Path) -> list[ManifestRow]:
    """Combine the shard manifests of ``out_dir`` into ``manifest.jsonl`` (one row per id, sorted by id)."""
    latest = read_manifests(out_dir)
    rows = [latest[uid] for uid in sorted(latest)]
    write_manifest(out_dir / "manifest.jsonl", rows)
    return rows
