"""``zeroclick listen``: a Storage SCP that analyses each study once it is complete and sends the results back.

Reception (pynetdicom threads)
    Calling-AE whitelist, optional TLS, TCP_NODELAY. Each instance is checked (pixel data complete for its
    geometry, else failure status 0xA900) and written to the spool atomically (temporary name, fsync,
    rename, directory fsync) *before* it is recorded in the SQLite queue and acknowledged. The same SOP
    Instance UID with the same pixels is acknowledged and ignored (idempotent); with different pixels it is
    kept aside under ``duplicates/`` and reported (``status()``, log), never dropped silently. When the free
    disk space falls under the watermark new associations are rejected (A-ASSOCIATE-RJ transient,
    local-limit-exceeded) and C-STOREs answered 0xA700 (out of resources). Received data is never deleted.

Scheduling (one thread)
    A study with no new instance for ``stable_s`` seconds becomes a job (unless the same set of instances was
    already analysed). Jobs run in worker processes (``python -m zeroclick.pipelines.pacs.analysis``, killed with the
    listener through PR_SET_PDEATHSIG) on a hard-linked snapshot of the study. Outputs are sent by C-STORE to
    the destination with retries and exponential backoff; a job is marked ``sent`` once, in the same
    transaction that records the send.

Crash safety
    Everything that matters is in the fsynced spool files and ``spool/queue.sqlite`` (WAL). On start
    the listener indexes spool files the database does not know (killed between rename and commit), removes
    temporary files, and puts jobs that were ``running`` back in the queue. Outputs carry deterministic UIDs,
    so even a send interrupted after the peer stored it but before our commit stores nothing new at the PACS.

Logs name studies by a short hash of the Study Instance UID, never by patient attributes.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zeroclick.imaging.errors import InvalidInputError
from zeroclick.pipelines.pacs.send import parse_destination, send_files, set_tcp_nodelay

__all__ = ["Listener", "ListenerConfig", "Spool"]

logger = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000

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


def study_key(study_uid: str) -> str:
    """Short, non-identifying name of a study for logs and folder names."""
    return hashlib.sha256(study_uid.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ListenerConfig:
    """Settings of :class:`Listener` (CLI: ``zeroclick listen --help``).

    ``allowed_aets`` empty means any calling AE title is accepted (a warning is logged).
    ``destination`` is ``AET@HOST:PORT``; without it results stay in ``spool/jobs/<id>/out``.
    """

    spool_dir: Path
    ae_title: str = "ZEROCLICK"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_aets: tuple[str, ...] = ()
    destination: str | None = None
    stable_s: float = 10.0
    workers: int = 1
    min_free_bytes: int = 1 << 30
    analysis: str | None = None
    analysis_timeout_s: float = 1800.0
    max_attempts: int = 3
    send_retries: int = 8
    send_backoff_s: float = 2.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    poll_s: float = 0.2
    extra_env: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------- spool


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(data: bytes, final: Path, tmp_dir: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{final.name}.{threading.get_ident()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)


class Spool:
    """The files and the SQLite queue under ``spool_dir`` (thread-safe; one connection behind a lock)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        for sub in ("tmp", "studies", "duplicates", "jobs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.db = sqlite3.connect(self.root / "queue.sqlite", check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is crash-safe in WAL mode for a killed process; after a power loss the last commits may be
        # missing, but the fsynced spool files are the truth and recover() re-indexes them (~3x faster storing).
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def _tx(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self.db.execute(sql, args).fetchall()

    # reception
    def store(self, *, sop_uid: str, study_uid: str, series_uid: str, data: bytes, pixel_sha256: str,
              calling_aet: str) -> str:
        """Spool one instance. Returns ``stored``, ``same`` (already there, same pixels) or ``duplicate``."""
        now = time.time()
        with self._lock:
            row = self.db.execute("SELECT pixel_sha256 FROM instances WHERE sop_uid=?", (sop_uid,)).fetchone()
        if row is not None and row[0] == pixel_sha256:
            return "same"
        skey = study_key(study_uid)
        if row is not None:
            final = self.root / "duplicates" / skey / f"{sop_uid}.{pixel_sha256[:12]}.dcm"
            _atomic_write(data, final, self.root / "tmp")
            with self._lock:
                self.db.execute("INSERT INTO duplicates(sop_uid, study_uid, path, pixel_sha256, calling_aet, "
                                "received_at) VALUES (?,?,?,?,?,?)",
                                (sop_uid, study_uid, str(final.relative_to(self.root)), pixel_sha256, calling_aet, now))
            logger.warning("study %s: instance received again with DIFFERENT pixels; kept aside in %s", skey,
                           final.parent.relative_to(self.root))
            return "duplicate"
        final = self.root / "studies" / skey / f"{sop_uid}.dcm"
        _atomic_write(data, final, self.root / "tmp")
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute("INSERT OR IGNORE INTO instances VALUES (?,?,?,?,?,?,?)",
                                (sop_uid, study_uid, series_uid, str(final.relative_to(self.root)), pixel_sha256,
                                 calling_aet, now))
                self.db.execute("INSERT INTO studies(study_uid, last_received, state) VALUES (?,?,'receiving') "
                                "ON CONFLICT(study_uid) DO UPDATE SET last_received=excluded.last_received, "
                                "state='receiving'", (study_uid, now))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return "stored"

    # recovery
    def recover(self) -> dict[str, int]:
        """Make the queue consistent after a crash; returns counts of what was repaired."""
        import pydicom

        for tmp in (self.root / "tmp").iterdir():
            tmp.unlink()
        known = {r[0] for r in self._tx("SELECT path FROM instances")}
        indexed = 0
        for path in sorted((self.root / "studies").rglob("*.dcm")):
            rel = str(path.relative_to(self.root))
            if rel in known:
                continue
            try:
                ds = pydicom.dcmread(path)
            except Exception:  # noqa: BLE001 - a file we cannot read is left in place and logged
                logger.error("unreadable spool file %s left in place", rel)
                continue
            self.store(sop_uid=str(ds.SOPInstanceUID), study_uid=str(ds.StudyInstanceUID),
                       series_uid=str(ds.get("SeriesInstanceUID", "")), data=path.read_bytes(),
                       pixel_sha256=pixel_sha256(ds), calling_aet="(recovered)")
            indexed += 1
        requeued = len(self._tx("SELECT id FROM jobs WHERE state='running'"))
        self._tx("UPDATE jobs SET state='queued' WHERE state='running'")
        return {"indexed": indexed, "requeued": requeued}

    # jobs
    def promote_stable(self, stable_s: float) -> list[int]:
        """Turn studies without news for ``stable_s`` into jobs; returns the new job ids."""
        now = time.time()
        new: list[int] = []
        with self._lock:
            due = self.db.execute("SELECT study_uid, last_received, analysed_signature FROM studies "
                                  "WHERE state='receiving' AND last_received <= ?", (now - stable_s,)).fetchall()
            for study_uid, last, done_sig in due:
                uids = [r[0] for r in self.db.execute(
                    "SELECT sop_uid FROM instances WHERE study_uid=? ORDER BY sop_uid", (study_uid,))]
                sig = hashlib.sha256("\n".join(uids).encode()).hexdigest()
                busy = self.db.execute("SELECT 1 FROM jobs WHERE study_uid=? AND state IN ('queued','running')",
                                       (study_uid,)).fetchone()
                if busy:
                    continue  # wait until the running job of this study is over
                self.db.execute("BEGIN IMMEDIATE")
                if sig == done_sig:
                    self.db.execute("UPDATE studies SET state='done' WHERE study_uid=?", (study_uid,))
                else:
                    cur = self.db.execute("INSERT INTO jobs(study_uid, signature, state, created, last_received) "
                                          "VALUES (?,?,'queued',?,?)", (study_uid, sig, now, last))
                    self.db.execute("UPDATE studies SET state='queued' WHERE study_uid=?", (study_uid,))
                    new.append(int(cur.lastrowid or 0))
                self.db.execute("COMMIT")
        return new

    def study_files(self, study_uid: str) -> list[Path]:
        return [self.root / r[0] for r in self._tx("SELECT path FROM instances WHERE study_uid=?", (study_uid,))]

    def status(self) -> dict[str, Any]:
        """Counts, jobs and duplicates (no patient attribute; studies by hash)."""
        jobs = [dict(zip(("id", "study", "state", "attempts", "send_attempts", "error", "outputs"), r))
                for r in self._tx("SELECT id, study_uid, state, attempts, send_attempts, error, outputs FROM jobs")]
        for j in jobs:
            j["study"] = study_key(j["study"])
            j["outputs"] = json.loads(j["outputs"]) if j["outputs"] else []
        dups = [{"study": study_key(s), "sop_instance_uid": u, "path": p}
                for s, u, p in self._tx("SELECT study_uid, sop_uid, path FROM duplicates")]
        return {
            "instances": self._tx("SELECT COUNT(*) FROM instances")[0][0],
            "studies": {study_key(s): st for s, st in self._tx("SELECT study_uid, state FROM studies")},
            "jobs": jobs,
            "duplicates": dups,
        }


def pixel_sha256(ds) -> str:
    """SHA-256 of the pixel data (of the whole encoded dataset when it has none)."""
    if "PixelData" in ds:
        return hashlib.sha256(bytes(ds.PixelData)).hexdigest()
    from io import BytesIO

    buf = BytesIO()
    ds.save_as(buf)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def pixel_problem(ds) -> str | None:
    """Why the pixel data is incomplete for the image geometry, or ``None`` when it is fine."""
    if "PixelData" not in ds:
        return None
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        spp, bits = int(ds.get("SamplesPerPixel", 1)), int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError) as exc:
        return f"image geometry tags missing ({exc})"
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is not None and ts.is_encapsulated:
        from pydicom.encaps import generate_frames

        try:
            n = sum(1 for _ in generate_frames(ds.PixelData, number_of_frames=frames))
        except Exception as exc:  # noqa: BLE001
            return f"encapsulated pixel data cannot be parsed ({exc})"
        return None if n == frames else f"{n} of {frames} compressed frames present"
    expected = (rows * cols * frames * spp * bits + 7) // 8
    have = len(ds.PixelData)
    return None if have >= expected else f"pixel data truncated: {have} of {expected} bytes"


# ---------------------------------------------------------------------------------------------- listener


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


class Listener:
    """The zero-click Storage SCP. ``start()`` returns at once; ``stop()`` ends it; ``serve_forever()`` blocks.

    Examples
    --------
    >>> cfg = ListenerConfig(spool_dir=Path("spool"), allowed_aets=("MODALITY",),
    ...                      destination="PACS@127.0.0.1:4242", stable_s=10)      # doctest: +SKIP
    >>> Listener(cfg).serve_forever()                                             # doctest: +SKIP
    """

    def __init__(self, config: ListenerConfig) -> None:
        if config.destination:
            parse_destination(config.destination)  # fail early on a bad destination
        if bool(config.tls_cert) != bool(config.tls_key):
            raise InvalidInputError("TLS needs both --tls-cert and --tls-key")
        self.config = config
        self.spool = Spool(config.spool_dir)
        self._server = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: dict[int, tuple[subprocess.Popen, float]] = {}

    @property
    def port(self) -> int:
        return int(self._server.server_address[1]) if self._server else self.config.port

    def disk_ok(self) -> bool:
        return _free_bytes(self.spool.root) >= self.config.min_free_bytes

    # ---- reception
    def _ssl_context(self) -> ssl.SSLContext | None:
        c = self.config
        if not c.tls_cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(c.tls_cert), str(c.tls_key))
        if c.tls_ca:
            ctx.load_verify_locations(str(c.tls_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def _on_store(self, event) -> Any:
        from pydicom.dataset import Dataset

        if not self.disk_ok():
            logger.error("free disk under the watermark: C-STORE refused (0xA700)")
            return STATUS_OUT_OF_RESOURCES
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            problem = pixel_problem(ds)
            sop_uid, study_uid = str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)
        except Exception as exc:  # noqa: BLE001 - undecodable data set
            logger.warning("C-STORE refused: data set cannot be decoded (%s)", type(exc).__name__)
            return STATUS_CANNOT_UNDERSTAND
        if problem:
            logger.warning("C-STORE refused (0xA900): %s", problem)
            status = Dataset()
            status.Status = STATUS_DATASET_MISMATCH
            status.ErrorComment = problem[:64]
            return status
        try:
            self.spool.store(sop_uid=sop_uid, study_uid=study_uid, series_uid=str(ds.get("SeriesInstanceUID", "")),
                             data=event.encoded_dataset(include_meta=True), pixel_sha256=pixel_sha256(ds),
                             calling_aet=str(event.assoc.requestor.ae_title).strip())
        except OSError as exc:
            logger.error("spool write failed (%s): C-STORE refused (0xA700)", exc)
            return STATUS_OUT_OF_RESOURCES
        return STATUS_SUCCESS

    def _make_ae(self):
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        listener = self

        class _GuardedAE(AE):
            """Rejects associations (transient, local-limit-exceeded) while the disk is under the watermark."""

            @property
            def maximum_associations(self) -> int:  # type: ignore[override]
                return self._maximum_associations if listener.disk_ok() else -1

            @maximum_associations.setter
            def maximum_associations(self, value: int) -> None:
                self._maximum_associations = max(int(value), 1)

        ae = _GuardedAE(ae_title=self.config.ae_title)
        ae.maximum_associations = 16
        ae.maximum_pdu_size = 0
        ae.network_timeout = ae.dimse_timeout = ae.acse_timeout = 60
        if self.config.allowed_aets:
            ae.require_calling_aet = list(self.config.allowed_aets)
        else:
            logger.warning("no --allow AE title given: any calling AE may store")
        from pydicom.uid import AllTransferSyntaxes

        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, AllTransferSyntaxes)
        ae.add_supported_context(Verification)
        return ae, evt

    # ---- lifecycle
    def start(self) -> None:
        repaired = self.spool.recover()
        if any(repaired.values()):
            logger.warning("recovered after an interruption: %s", repaired)
        ae, evt = self._make_ae()
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_OPEN, set_tcp_nodelay)]
        self._server = ae.start_server((self.config.host, self.config.port), block=False, evt_handlers=handlers,
                                       ssl_context=self._ssl_context())
        self._thread = threading.Thread(target=self._loop, name="zeroclick-scheduler", daemon=True)
        self._thread.start()
        logger.info("listening as %s on %s:%d", self.config.ae_title, self.config.host, self.port)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self._server:
            self._server.shutdown()
            self._server = None
        for proc, _ in self._running.values():
            proc.kill()
        self.spool.close()

    def serve_forever(self) -> None:
        self.start()
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        try:
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    # ---- scheduling
    def _loop(self) -> None:
        while not self._stop.wait(self.config.poll_s):
            try:
                self.spool.promote_stable(self.config.stable_s)
                self._reap()
                self._launch()
                self._send_due()
            except Exception:  # noqa: BLE001 - the scheduler must survive anything and log it
                logger.exception("scheduler step failed")

    def _launch(self) -> None:
        free = self.config.workers - len(self._running)
        if free <= 0:
            return
        for job_id, study_uid, attempts in self.spool._tx(
                "SELECT id, study_uid, attempts FROM jobs WHERE state='queued' ORDER BY id LIMIT ?", (free,)):
            if attempts >= self.config.max_attempts:
                self.spool._tx("UPDATE jobs SET state='failed', error=coalesce(error, 'too many attempts') "
                               "WHERE id=?", (job_id,))
                continue
            last = self.spool._tx("SELECT last_received FROM studies WHERE study_uid=?", (study_uid,))
            if last and time.time() - last[0][0] < self.config.stable_s:
                continue  # images arrived after the job was queued (e.g. a resend after a restart): wait
            job_dir = self.spool.root / "jobs" / str(job_id) / f"attempt{attempts + 1}"
            in_dir, out_dir = job_dir / "in", job_dir / "out"
            shutil.rmtree(job_dir, ignore_errors=True)
            in_dir.mkdir(parents=True)
            files = sorted(self.spool.study_files(study_uid))
            for path in files:
                try:
                    os.link(path, in_dir / path.name)
                except OSError:
                    shutil.copy2(path, in_dir / path.name)
            # the signature of what is analysed (the study may have grown since the job was queued)
            signature = hashlib.sha256("\n".join(sorted(p.stem for p in files)).encode()).hexdigest()
            self.spool._tx("UPDATE jobs SET signature=? WHERE id=?", (signature, job_id))
            cmd = [sys.executable, "-m", "zeroclick.pipelines.pacs.analysis", str(in_dir), str(out_dir)]
            if self.config.analysis:
                cmd += ["--analysis", self.config.analysis]
            env = dict(os.environ, **self.config.extra_env)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                    preexec_fn=_set_pdeathsig if sys.platform.startswith("linux") else None)
            self.spool._tx("UPDATE jobs SET state='running', attempts=attempts+1, started=? WHERE id=?",
                           (time.time(), job_id))
            self._running[job_id] = (proc, time.time())
            logger.info("job %d (study %s) started", job_id, study_key(study_uid))

    def _reap(self) -> None:
        for job_id, (proc, started) in list(self._running.items()):
            if proc.poll() is None:
                if time.time() - started > self.config.analysis_timeout_s:
                    proc.kill()
                continue
            del self._running[job_id]
            out, err = proc.communicate()
            answer: dict[str, Any] = {}
            if out.strip():
                try:
                    answer = json.loads(out.strip().splitlines()[-1])
                except ValueError:
                    answer = {}
            if proc.returncode == 0 and "outputs" in answer:
                state = "analysed" if self.config.destination else "done"
                self.spool._tx("UPDATE jobs SET state=?, finished=?, outputs=?, next_send_at=? WHERE id=?",
                               (state, time.time(), json.dumps(answer["outputs"]), time.time(), job_id))
                self._mark_study_analysed(job_id)
                logger.info("job %d analysed: %d outputs", job_id, len(answer["outputs"]))
            else:
                reason = answer.get("error") or (err.strip().splitlines() or ["killed"])[-1]
                self.spool._tx("UPDATE jobs SET state='queued', error=? WHERE id=?", (reason[:500], job_id))
                logger.warning("job %d failed (%s); it will be retried up to %d attempts", job_id, reason,
                               self.config.max_attempts)

    def _mark_study_analysed(self, job_id: int) -> None:
        self.spool._tx("UPDATE studies SET analysed_signature=(SELECT signature FROM jobs WHERE id=?), "
                       "state=CASE WHEN state='queued' THEN 'done' ELSE state END "
                       "WHERE study_uid=(SELECT study_uid FROM jobs WHERE id=?)", (job_id, job_id))

    def _send_due(self) -> None:
        if not self.config.destination:
            return
        for job_id, outputs, n in self.spool._tx(
                "SELECT id, outputs, send_attempts FROM jobs WHERE state='analysed' AND next_send_at <= ?",
                (time.time(),)):
            report = send_files(json.loads(outputs), self.config.destination, calling_aet=self.config.ae_title,
                                retries=0)
            if report.ok:
                self.spool._tx("UPDATE jobs SET state='sent', sent_at=?, send_attempts=? WHERE id=?",
                               (time.time(), n + 1, job_id))
                logger.info("job %d: %d results sent to %s", job_id, len(report.stored), report.destination)
            elif n + 1 > self.config.send_retries:
                self.spool._tx("UPDATE jobs SET state='send_failed', send_attempts=?, error=? WHERE id=?",
                               (n + 1, "; ".join(r for _, r in report.failed)[:500], job_id))
                logger.error("job %d: giving up sending after %d attempts", job_id, n + 1)
            else:
                wait = self.config.send_backoff_s * 2 ** n
                self.spool._tx("UPDATE jobs SET send_attempts=?, next_send_at=? WHERE id=?",
                               (n + 1, time.time() + wait, job_id))
                logger.warning("job %d: send failed, retry in %.0f s", job_id, wait)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zeroclick.pipelines.pacs.listener`` = ``zeroclick listen``."""
    from zeroclick.pipelines.commands.listen import build_parser, run_from_args

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_from_args(build_parser().parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
