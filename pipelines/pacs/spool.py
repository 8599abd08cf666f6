"""The listener's spool: received files under safe names and the SQLite queue, serialised per SOP Instance UID.

Names
    No path is ever built from received data except a UID that passed :func:`check_uid`
    (``^[0-9]+(\\.[0-9]+)*$``, at most 64 characters); study folders are named by :func:`study_key` (a hash),
    and every path is checked to lie inside the spool (:func:`inside`) before anything is written.

Conflicts
    Two stores of one SOP Instance UID are serialised by a lock per UID: the check against the database,
    the file write and the database insert happen under it. The first version is the spool file; every
    later version with different pixels is kept under ``duplicates/`` and recorded, and its study counts a
    conflict (``studies.conflicts``). A spool file's pixels always hash to the value in the database.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeroclick.imaging.errors import InvalidInputError

__all__ = ["InstanceInfo", "Spool", "UnsafeNameError", "check_uid", "inside", "inspect_instance", "study_key"]

logger = logging.getLogger(__name__)

_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")
UID_MAX_CHARS = 64
_UNDEFINED_LENGTH = 0xFFFFFFFF
_CHUNK = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, series_uid TEXT, path TEXT NOT NULL,
    pixel_sha256 TEXT NOT NULL, calling_aet TEXT, received_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_uid);
CREATE TABLE IF NOT EXISTS duplicates (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sop_uid TEXT NOT NULL, study_uid TEXT NOT NULL, path TEXT NOT NULL,
    pixel_sha256 TEXT NOT NULL, calling_aet TEXT, received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY, last_received REAL NOT NULL, state TEXT NOT NULL, analysed_signature TEXT);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, study_uid TEXT NOT NULL, signature TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, started REAL,
    finished REAL, outputs TEXT, error TEXT, send_attempts INTEGER NOT NULL DEFAULT 0, next_send_at REAL,
    sent_at REAL, last_received REAL);
"""
# Columns added after the first release (an older queue.sqlite gets them on open).
_ADDED_COLUMNS = {
    "studies": (("conflicts", "INTEGER NOT NULL DEFAULT 0"), ("reason", "TEXT"), ("checked_signature", "TEXT")),
    "duplicates": (("resolved", "INTEGER NOT NULL DEFAULT 0"),),
    "jobs": (("supersedes", "INTEGER"),),
}


class UnsafeNameError(InvalidInputError):
    """A received identifier cannot name a file (not a DICOM UID) or a path would leave the spool."""


def check_uid(value: Any, what: str) -> str:
    """``value`` as a string when it is a valid DICOM UID (digits and dots, at most 64 characters).

    Raises
    ------
    UnsafeNameError
        Naming ``what`` and why, without echoing the value (it may be crafted or identifying).
    """
    text = str(value if value is not None else "")
    if not text:
        raise UnsafeNameError(f"{what} is missing")
    if len(text) > UID_MAX_CHARS:
        raise UnsafeNameError(f"{what} is {len(text)} characters long (a UID has at most {UID_MAX_CHARS})")
    if not _UID_RE.fullmatch(text):
        raise UnsafeNameError(f"{what} is not a DICOM UID (only digits and dots are allowed)")
    return text


def inside(root: Path, path: Path) -> Path:
    """``path`` resolved, after checking that it lies inside ``root`` (raises :class:`UnsafeNameError`)."""
    resolved_root = Path(root).resolve()
    resolved = Path(path).resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise UnsafeNameError(f"refusing to write outside {resolved_root}")
    return resolved


def study_key(study_uid: str) -> str:
    """Short, non-identifying name of a study for logs and folder names."""
    return hashlib.sha256(study_uid.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class InstanceInfo:
    """What the spool needs from one received file (read without loading large pixel data)."""

    sop_uid: str
    study_uid: str
    series_uid: str
    pixel_sha256: str
    problem: str | None  # why the pixel data is incomplete for its geometry; None when fine


def _sha256_of_file_range(path: Path, offset: int, length: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(offset)
        left = length
        while left > 0:
            block = fh.read(min(_CHUNK, left))
            if not block:
                break
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _pixel_problem(ds, have: int) -> str | None:
    """Why ``have`` bytes of native pixel data are too few for the image geometry, or ``None``."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        spp, bits = int(ds.get("SamplesPerPixel", 1)), int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError) as exc:
        return f"image geometry tags missing ({type(exc).__name__})"
    expected = (rows * cols * frames * spp * bits + 7) // 8
    return None if have >= expected else f"pixel data truncated: {have} of {expected} bytes"


def _encapsulated_problem(ds, data: bytes) -> str | None:
    from pydicom.encaps import generate_frames

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        n = sum(1 for _ in generate_frames(data, number_of_frames=frames))
    except Exception as exc:  # noqa: BLE001 - any parse failure is a refusal reason
        return f"encapsulated pixel data cannot be parsed ({type(exc).__name__})"
    return None if n == frames else f"{n} of {frames} compressed frames present"


def inspect_instance(path: Path) -> InstanceInfo:
    """UIDs (validated), pixel hash and pixel completeness of one Part-10 file.

    Native pixel data is hashed straight from the file in 1 MiB blocks, so a large instance is never held in
    memory; compressed (encapsulated) pixel data is read to count its frames.

    Raises
    ------
    UnsafeNameError
        When the SOP Instance, Series or Study Instance UID is not a valid UID.
    InvalidInputError
        When the file cannot be read as DICOM.
    """
    import pydicom

    try:
        ds = pydicom.dcmread(path, defer_size=_CHUNK)
        return _inspect(ds, path)
    except InvalidInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure of received bytes is a named refusal
        raise InvalidInputError(f"data set cannot be decoded ({type(exc).__name__})") from exc


def _inspect(ds, path: Path) -> InstanceInfo:
    sop = check_uid(ds.get("SOPInstanceUID"), "SOP Instance UID")
    series = check_uid(ds.get("SeriesInstanceUID"), "Series Instance UID")
    study = check_uid(ds.get("StudyInstanceUID"), "Study Instance UID")
    if "PixelData" not in ds:
        return InstanceInfo(sop, study, series, _sha256_of_file(path), None)
    raw: Any = ds.get_item(0x7FE00010, keep_deferred=True)  # a RawDataElement while deferred
    if raw is not None and getattr(raw, "value", b"") is None and raw.length != _UNDEFINED_LENGTH:
        digest = _sha256_of_file_range(path, int(raw.value_tell), int(raw.length))
        return InstanceInfo(sop, study, series, digest, _pixel_problem(ds, int(raw.length)))
    data = bytes(ds.PixelData)
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    problem = _encapsulated_problem(ds, data) if ts is not None and ts.is_encapsulated else _pixel_problem(ds, len(data))
    return InstanceInfo(sop, study, series, hashlib.sha256(data).hexdigest(), problem)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The files and the SQLite queue under ``spool_dir`` (thread-safe; one connection behind a lock)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        for sub in ("tmp", "studies", "duplicates", "jobs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._uid_locks: dict[str, list] = {}  # sop_uid -> [lock, users]
        self._uid_locks_guard = threading.Lock()
        self.db = sqlite3.connect(self.root / "queue.sqlite", check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is crash-safe in WAL mode for a killed process; after a power loss the last commits may be
        # missing, but the fsynced spool files are the truth and recover() re-indexes them (~3x faster storing).
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        for table, columns in _ADDED_COLUMNS.items():
            have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns:
                if name not in have:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def _tx(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self.db.execute(sql, args).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error), holding the connection lock."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    @contextmanager
    def _uid_lock(self, sop_uid: str) -> Iterator[None]:
        with self._uid_locks_guard:
            entry = self._uid_locks.setdefault(sop_uid, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._uid_locks_guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._uid_locks[sop_uid]

    def path_for(self, *parts: str) -> Path:
        """A path under the spool from already validated parts, checked to stay inside it."""
        return inside(self.root, self.root.joinpath(*parts))

    def _place(self, source: Path, final: Path) -> None:
        """Copy ``source`` to ``final`` atomically (temporary name in ``tmp/``, fsync, rename, directory fsync)."""
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path_for("tmp", f"{final.name}.{threading.get_ident()}.tmp")
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)

    # reception
    def store(self, info: InstanceInfo, source: Path, *, calling_aet: str) -> str:
        """Spool one received file. Returns ``stored``, ``same`` (already there, same pixels) or ``duplicate``.

        The UIDs in ``info`` were validated by :func:`inspect_instance`; they are checked again here because
        this is where they become file names.
        """
        sop_uid = check_uid(info.sop_uid, "SOP Instance UID")
        check_uid(info.study_uid, "Study Instance UID")
        skey = study_key(info.study_uid)
        now = time.time()
        with self._uid_lock(sop_uid):
            row = self._tx("SELECT pixel_sha256 FROM instances WHERE sop_uid=?", (sop_uid,))
            if row and row[0][0] == info.pixel_sha256:
                return "same"
            if row:
                seen = self._tx("SELECT 1 FROM duplicates WHERE sop_uid=? AND pixel_sha256=?",
                                (sop_uid, info.pixel_sha256))
                if seen:
                    return "same"  # this differing version is already kept
                final = self.path_for("duplicates", skey, f"{sop_uid}.{info.pixel_sha256[:16]}.dcm")
                self._place(source, final)
                with self.transaction() as db:
                    db.execute("INSERT INTO duplicates(sop_uid, study_uid, path, pixel_sha256, calling_aet, "
                               "received_at) VALUES (?,?,?,?,?,?)",
                               (sop_uid, info.study_uid, str(final.relative_to(self.root)), info.pixel_sha256,
                                calling_aet, now))
                    db.execute("INSERT INTO studies(study_uid, last_received, state, conflicts) "
                               "VALUES (?,?,'receiving',1) ON CONFLICT(study_uid) DO UPDATE SET "
                               "last_received=excluded.last_received, state='receiving', conflicts=conflicts+1",
                               (info.study_uid, now))
                logger.warning("study %s: an instance was received again with DIFFERENT pixels; both versions kept "
                               "(%s), the study is flagged conflicting_instances", skey,
                               final.parent.relative_to(self.root))
                return "duplicate"
            final = self.path_for("studies", skey, f"{sop_uid}.dcm")
            self._place(source, final)
            with self.transaction() as db:
                db.execute("INSERT OR REPLACE INTO instances VALUES (?,?,?,?,?,?,?)",
                           (sop_uid, info.study_uid, info.series_uid, str(final.relative_to(self.root)),
                            info.pixel_sha256, calling_aet, now))
                db.execute("INSERT INTO studies(study_uid, last_received, state) VALUES (?,?,'receiving') "
                           "ON CONFLICT(study_uid) DO UPDATE SET last_received=excluded.last_received, "
                           "state='receiving'", (info.study_uid, now))
        return "stored"

    # recovery
    def recover(self) -> dict[str, int]:
        """Make the queue consistent after a crash; returns counts of what was repaired."""
        for tmp in (self.root / "tmp").iterdir():
            tmp.unlink()
        indexed = 0
        for path, rel, info in self._unindexed("studies", "instances"):
            if self.path_for("studies", study_key(info.study_uid), f"{info.sop_uid}.dcm") != path.resolve():
                logger.error("spool file %s does not match its own UIDs; left in place", rel)
                continue
            with self.transaction() as db:  # the file is already in place: only index it
                db.execute("INSERT OR IGNORE INTO instances VALUES (?,?,?,?,?,?,?)",
                           (info.sop_uid, info.study_uid, info.series_uid, rel, info.pixel_sha256, "(recovered)",
                            path.stat().st_mtime))
                db.execute("INSERT INTO studies(study_uid, last_received, state) VALUES (?,?,'receiving') "
                           "ON CONFLICT(study_uid) DO UPDATE SET state='receiving', "
                           "last_received=max(last_received, excluded.last_received)",
                           (info.study_uid, path.stat().st_mtime))
            indexed += 1
        indexed += self._recover_duplicates()
        requeued = len(self._tx("SELECT id FROM jobs WHERE state='running'"))
        self._tx("UPDATE jobs SET state='queued' WHERE state='running'")
        return {"indexed": indexed, "requeued": requeued}

    def _unindexed(self, folder: str, table: str) -> Iterator[tuple[Path, str, InstanceInfo]]:
        """Spool files under ``folder`` that ``table`` does not list, read back (unreadable ones logged, skipped)."""
        known = {r[0] for r in self._tx(f"SELECT path FROM {table}")}
        for path in sorted((self.root / folder).rglob("*.dcm")):
            rel = str(path.relative_to(self.root))
            if rel in known:
                continue
            try:
                yield path, rel, inspect_instance(path)
            except InvalidInputError as exc:  # a file we cannot read is left in place and logged
                logger.error("unreadable spool file %s left in place (%s)", rel, exc)

    def _recover_duplicates(self) -> int:
        """Record kept versions whose database row was lost (killed between rename and commit)."""
        found = 0
        for path, rel, info in self._unindexed("duplicates", "duplicates"):
            with self.transaction() as db:
                db.execute("INSERT INTO duplicates(sop_uid, study_uid, path, pixel_sha256, calling_aet, received_at) "
                           "VALUES (?,?,?,?,?,?)", (info.sop_uid, info.study_uid, rel, info.pixel_sha256,
                                                    "(recovered)", path.stat().st_mtime))
                db.execute("INSERT INTO studies(study_uid, last_received, state, conflicts) VALUES (?,?,'receiving',1) "
                           "ON CONFLICT(study_uid) DO UPDATE SET state='receiving', conflicts=conflicts+1",
                           (info.study_uid, path.stat().st_mtime))
            found += 1
        return found

    # reading
    def study_files(self, study_uid: str) -> list[Path]:
        return [self.path_for(r[0]) for r in self._tx("SELECT path FROM instances WHERE study_uid=?", (study_uid,))]

    def signature(self, study_uid: str) -> str:
        """SHA-256 of the study's sorted SOP Instance UIDs and pixel hashes (what an analysis would see)."""
        rows = self._tx("SELECT sop_uid, pixel_sha256 FROM instances WHERE study_uid=? ORDER BY sop_uid",
                        (study_uid,))
        return hashlib.sha256("\n".join(f"{u} {h}" for u, h in rows).encode()).hexdigest()

    def resolve_conflicts(self, key: str, *, keep: str) -> int:
        """Resolve the conflicting instances of the study whose :func:`study_key` is ``key``.

        ``keep="first"`` keeps the versions received first; ``keep="latest"`` makes the latest received
        version of each conflicting instance the one analysed (the others stay in the spool, recorded).
        The study is then analysed like any other. Returns the number of conflicts resolved.
        """
        if keep not in ("first", "latest"):
            raise InvalidInputError(f"keep={keep!r}: use 'first' or 'latest'")
        studies = [s for (s,) in self._tx("SELECT study_uid FROM studies") if study_key(s) == key]
        if not studies:
            raise InvalidInputError(f"no study {key!r} in this spool: see `zeroclick listen --spool DIR --status`")
        study_uid = studies[0]
        with self.transaction() as db:
            rows = db.execute("SELECT id, sop_uid, path, pixel_sha256 FROM duplicates WHERE study_uid=? AND "
                              "resolved=0 ORDER BY received_at, id", (study_uid,)).fetchall()
            if keep == "latest":
                for _id, sop_uid, path, digest in rows:  # later rows win
                    old = db.execute("SELECT path, pixel_sha256 FROM instances WHERE sop_uid=?", (sop_uid,)).fetchone()
                    db.execute("UPDATE instances SET path=?, pixel_sha256=? WHERE sop_uid=?", (path, digest, sop_uid))
                    db.execute("UPDATE duplicates SET path=?, pixel_sha256=? WHERE id=?", (old[0], old[1], _id))
            db.execute("UPDATE duplicates SET resolved=1 WHERE study_uid=?", (study_uid,))
            db.execute("UPDATE studies SET conflicts=0, state='receiving', reason=NULL, checked_signature=NULL "
                       "WHERE study_uid=?", (study_uid,))
        logger.warning("study %s: %d conflicting instance(s) resolved, keeping the %s versions", key, len(rows), keep)
        return len(rows)

    def status(self) -> dict[str, Any]:
        """Counts, studies, jobs and conflicting versions (no patient attribute; studies by hash)."""
        jobs = [dict(zip(("id", "study", "state", "attempts", "send_attempts", "error", "outputs", "supersedes"), r))
                for r in self._tx("SELECT id, study_uid, state, attempts, send_attempts, error, outputs, supersedes "
                                  "FROM jobs ORDER BY id")]
        for j in jobs:
            j["study"] = study_key(j["study"])
            j["outputs"] = json.loads(j["outputs"]) if j["outputs"] else []
        dups = [{"study": study_key(s), "sop_instance_uid": u, "path": p, "pixel_sha256": h, "resolved": bool(r)}
                for s, u, p, h, r in self._tx("SELECT study_uid, sop_uid, path, pixel_sha256, resolved "
                                              "FROM duplicates ORDER BY id")]
        studies = {study_key(s): {"state": st, "reason": why, "conflicts": c}
                   for s, st, why, c in self._tx("SELECT study_uid, state, reason, conflicts FROM studies")}
        return {
            "instances": self._tx("SELECT COUNT(*) FROM instances")[0][0],
            "studies": studies,
            "jobs": jobs,
            "duplicates": dups,
        }
