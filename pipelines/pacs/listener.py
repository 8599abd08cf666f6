"""``zeroclick listen``: a Storage SCP that analyses each study once it is complete and sends the results back.

Connections (:mod:`zeroclick.pipelines.pacs.guard`)
    Deadlines on the TLS handshake and the association request, per-peer limits before a slot is held, the
    calling-AE whitelist checked at the association request, a PDU length cap and a maximum instance size;
    received data sets stream to a temporary file (pynetdicom's chunked mode), never whole into memory.

Reception (pynetdicom threads)
    Each instance's UIDs must be DICOM UIDs (digits and dots, at most 64 characters) or the C-STORE is refused
    (0xC000) with a log line saying which and why; file names come only from validated UIDs and a hash of the
    Study Instance UID, and every path is checked to lie inside the spool. Pixel data must be complete for its
    geometry (else 0xA900). The file is written to the spool atomically (temporary name, fsync, rename,
    directory fsync) *before* it is recorded in the SQLite queue and acknowledged. Stores of one SOP Instance
    UID are serialised; the same pixels again are acknowledged and ignored; different pixels are kept under
    ``duplicates/``, recorded, and flag the study ``conflicting_instances``. Under the free-disk watermark new
    associations are rejected and C-STOREs answered 0xA700. Received data is deleted only by the
    configured retention (finished studies by age or spool size, :func:`zeroclick.pipelines.pacs.jobs.purge`).

Scheduling (one thread)
    A study quiet for ``stable_s`` seconds (measured from the wall-clock time of its last instance, stored in
    the database, so it survives restarts) is analysed only when it is complete by its own geometry
    (:mod:`zeroclick.pipelines.pacs.completeness`); otherwise it waits, and after ``max_wait_s`` without news it
    ends as ``incomplete`` with the reason, and nothing is sent. A study with conflicting instances is not
    analysed until the conflict is resolved (``zeroclick listen --resolve``). A study with nothing to analyse
    (a lone localizer) says so instead of failing. Jobs run in worker processes (``python -m
    zeroclick.pipelines.pacs.analysis``, killed with the listener through PR_SET_PDEATHSIG) on a hard-linked
    snapshot of the study. A permanent input error (worker exit 4) fails the job at once; other failures are
    retried up to ``max_attempts``; the study's state follows its job's (:func:`~zeroclick.pipelines.pacs.jobs.set_job_state`)
    and ``zeroclick jobs retry`` re-queues. Outputs are sent by C-STORE with retries and exponential backoff; a job is marked
    ``sent`` once, in the same transaction that records the send. A re-analysis supersedes the earlier results
    (:mod:`zeroclick.pipelines.pacs.supersede`).

Crash safety
    Everything that matters is in the fsynced spool files and ``spool/queue.sqlite`` (WAL). On start
    the listener indexes spool files the database does not know (killed between rename and commit), removes
    temporary files, and puts jobs that were ``running`` back in the queue.

Logs name studies by a short hash of the Study Instance UID, never by patient attributes.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
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
from zeroclick.pipelines.pacs.completeness import COMPLETENESS_MODES, assess
from zeroclick.pipelines.pacs.guard import ConnectionGuard, ConnectionLimits, start_guarded_server
from zeroclick.pipelines.pacs.jobs import purge, set_job_state
from zeroclick.pipelines.pacs.observe import Metrics, StatusServer, fields, render_metrics, spool_bytes
from zeroclick.pipelines.pacs.send import parse_destination, send_files, set_tcp_nodelay
from zeroclick.pipelines.pacs.spool import (
    Spool,
    UnsafeNameError,
    check_uid,
    inside,
    inspect_instance,
    study_key,
)

__all__ = ["ConnectionLimits", "Listener", "ListenerConfig", "Spool", "check_uid", "study_key"]

logger = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True)
class ListenerConfig:
    """Settings of :class:`Listener` (CLI: ``zeroclick listen --help``).

    ``allowed_aets`` empty means any calling AE title is accepted (a warning is logged).
    ``destination`` is ``AET@HOST:PORT``; without it results stay in ``spool/jobs/<id>/out``.
    ``completeness`` is ``cardiac``, ``geometry`` or ``none`` (:mod:`zeroclick.pipelines.pacs.completeness`).
    ``destinations`` maps a calling AE title to where the results of its studies go (default ``destination``).
    ``http_port`` ``None`` or 0: no status page; ``retention_*`` ``None``: received data is never deleted.
    Built from a TOML file and flags by :mod:`zeroclick.pipelines.pacs.config`.
    """

    spool_dir: Path
    ae_title: str = "ZEROCLICK"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_aets: tuple[str, ...] = ()
    destination: str | None = None
    stable_s: float = 10.0
    max_wait_s: float = 3600.0
    completeness: str = "cardiac"
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
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    poll_s: float = 0.2
    extra_env: dict[str, str] = field(default_factory=dict)
    destinations: dict[str, str] = field(default_factory=dict)
    http_host: str = "127.0.0.1"
    http_port: int | None = None
    retention_max_age_s: float | None = None
    retention_max_bytes: int | None = None
    retention_every_s: float = 600.0


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _failure(code: int, comment: str):
    from pydicom.dataset import Dataset

    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]
    return status


class Listener:
    """The zero-click Storage SCP. ``start()`` returns at once; ``stop()`` ends it; ``serve_forever()`` blocks.

    Examples
    --------
    >>> cfg = ListenerConfig(spool_dir=Path("spool"), allowed_aets=("MODALITY",),
    ...                      destination="PACS@127.0.0.1:4242", stable_s=10)      # doctest: +SKIP
    >>> Listener(cfg).serve_forever()                                             # doctest: +SKIP
    """

    def __init__(self, config: ListenerConfig) -> None:
        for where in (config.destination, *config.destinations.values()):
            if where:
                parse_destination(where)  # fail early on a bad destination
        if bool(config.tls_cert) != bool(config.tls_key):
            raise InvalidInputError("TLS needs both --tls-cert and --tls-key")
        if config.completeness not in COMPLETENESS_MODES:
            raise InvalidInputError(f"completeness={config.completeness!r}: use one of {', '.join(COMPLETENESS_MODES)}")
        self.config = config
        self.spool = Spool(config.spool_dir)
        self.guard: ConnectionGuard | None = None
        self._server: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: dict[int, tuple[subprocess.Popen, float]] = {}
        self.metrics = Metrics()
        self.http: StatusServer | None = None
        self._receiving: dict[str, int] = {}  # study key -> instances stored by this process since it was stable
        self._spool_bytes: tuple[float, int] = (0.0, 0)
        self._retention_at = 0.0

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
        calling = str(event.assoc.requestor.ae_title).strip()
        limit = self.config.limits.max_instance_bytes
        if self.guard is not None and self.guard.take_oversize(event.assoc):
            logger.warning("C-STORE from %s refused (0xA700): instance larger than %d bytes", calling, limit)
            return _failure(STATUS_OUT_OF_RESOURCES, f"instance larger than {limit} bytes")
        if not self.disk_ok():
            logger.error("free disk under the watermark: C-STORE refused (0xA700)")
            return STATUS_OUT_OF_RESOURCES
        path = Path(event.dataset_path)
        try:
            info = inspect_instance(path)
        except InvalidInputError as exc:  # UnsafeNameError included: the message names the UID and why
            logger.warning("C-STORE from %s refused (0xC000): %s", calling, exc)
            return _failure(STATUS_CANNOT_UNDERSTAND, str(exc))
        except OSError as exc:
            logger.error("received data set unreadable (%s): C-STORE refused (0xA700)", type(exc).__name__)
            return STATUS_OUT_OF_RESOURCES
        if info.problem:
            logger.warning("C-STORE from %s refused (0xA900): %s", calling, info.problem)
            return _failure(STATUS_DATASET_MISMATCH, info.problem)
        try:
            outcome = self.spool.store(info, path, calling_aet=calling)
        except UnsafeNameError as exc:
            logger.warning("C-STORE from %s refused (0xC000): %s", calling, exc)
            return _failure(STATUS_CANNOT_UNDERSTAND, str(exc))
        except OSError as exc:
            logger.error("spool write failed (%s): C-STORE refused (0xA700)", type(exc).__name__)
            return STATUS_OUT_OF_RESOURCES
        self._count_received(info.study_uid, outcome, calling)
        return STATUS_SUCCESS

    def _count_received(self, study_uid: str, outcome: str, calling: str) -> None:
        self.metrics.inc("zeroclick_instances_received_total", outcome=outcome)
        key = study_key(study_uid)
        first = key not in self._receiving
        self._receiving[key] = self._receiving.get(key, 0) + 1
        if first:
            logger.info("study %s: receiving from %s", key, calling,
                        extra=fields("study_receiving", study=key, calling_aet=calling))

    def _make_ae(self):
        from pydicom.uid import AllTransferSyntaxes
        from pynetdicom import AE, AllStoragePresentationContexts, _config
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        _config.STORE_RECV_CHUNKED_DATASET = True  # data sets stream to a temporary file, never whole into memory
        limits = self.config.limits
        ae = AE(ae_title=self.config.ae_title)
        # our ConnectionGuard enforces the real limits; pynetdicom's count includes connections not yet associated
        ae.maximum_associations = limits.max_pending + limits.max_associations + 1
        ae.maximum_pdu_size = limits.max_pdu_bytes
        ae.network_timeout = ae.dimse_timeout = limits.idle_s
        ae.acse_timeout = limits.association_request_s
        if not self.config.allowed_aets:
            logger.warning("no --allow AE title given: any calling AE may store")
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, AllTransferSyntaxes)
        ae.add_supported_context(Verification)
        return ae

    # ---- lifecycle
    def start(self) -> None:
        from pynetdicom import evt

        repaired = self.spool.recover()
        if any(repaired.values()):
            logger.warning("recovered after an interruption: %s", repaired)
        ae = self._make_ae()
        self.guard = ConnectionGuard(self.config.limits, allowed_aets=self.config.allowed_aets, disk_ok=self.disk_ok,
                                     called_aet=self.config.ae_title, on_reject=self._on_reject)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_OPEN, set_tcp_nodelay),
                    (evt.EVT_REQUESTED, self.guard.on_requested), (evt.EVT_ACCEPTED, self._on_accepted)]
        self._server = start_guarded_server(ae, (self.config.host, self.config.port), guard=self.guard,
                                            evt_handlers=handlers, ssl_context=self._ssl_context())
        self._thread = threading.Thread(target=self._loop, name="zeroclick-scheduler", daemon=True)
        self._thread.start()
        logger.info("listening as %s on %s:%d", self.config.ae_title, self.config.host, self.port)
        if self.config.http_port:
            try:
                self.http = StatusServer(self.config.http_host, self.config.http_port, snapshot=self.snapshot,
                                         metrics_text=self.metrics_text, healthy=self.healthy)
            except OSError as exc:  # the DICOM service matters more than its status page
                logger.error("status page not started: %s:%d cannot be bound (%s); set [http] port",
                             self.config.http_host, self.config.http_port, exc.strerror or exc)
            else:
                self.http.start()

    # ---- observability
    def _on_reject(self, info: dict[str, str]) -> None:
        self.metrics.inc("zeroclick_associations_total", result="rejected")
        self.metrics.error("association rejected", **{k: v for k, v in info.items() if k != "event"})

    def _on_accepted(self, event) -> None:
        req = event.assoc.requestor
        calling, called = str(req.ae_title).strip(), str(event.assoc.acceptor.ae_title).strip()
        self.metrics.inc("zeroclick_associations_total", result="accepted")
        logger.info("association from %s accepted (calling AE %s, called AE %s)", req.address, calling, called,
                    extra=fields("association_accepted", calling_aet=calling, called_aet=called, peer=req.address))

    def healthy(self) -> bool:
        """The scheduler thread is alive and the database answers."""
        try:
            self.spool._tx("SELECT 1")
        except Exception:  # noqa: BLE001 - any database failure is unhealthy
            return False
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def _spool_size(self) -> int:
        at, size = self._spool_bytes
        if time.time() - at > 60:
            self._spool_bytes = (time.time(), spool_bytes(self.spool.root))
        return self._spool_bytes[1]

    def _by_state(self, table: str) -> dict[str, int]:
        return {s: n for s, n in self.spool._tx(f"SELECT state, COUNT(*) FROM {table} GROUP BY state")}

    def metrics_text(self) -> str:
        return render_metrics(self.metrics, jobs_by_state=self._by_state("jobs"),
                              studies_by_state=self._by_state("studies"), spool_size=self._spool_size())

    def snapshot(self) -> dict[str, Any]:
        """What the status page shows (no patient attribute: studies by hash)."""
        from zeroclick.pipelines.pacs.jobs import list_jobs

        m = self.metrics
        return {"ae_title": self.config.ae_title, "port": self.port, "healthy": self.healthy(), "started": m.started,
                "jobs_by_state": self._by_state("jobs"), "studies_by_state": self._by_state("studies"),
                "recent_jobs": list_jobs(self.spool, limit=20), "errors": list(m.errors),
                "spool_bytes": self._spool_size(),
                "counters": {"received": sum(v for (n, _), v in dict(m.counters).items()
                                             if n == "zeroclick_instances_received_total"),
                             "send_failures": m.get("zeroclick_send_failures_total")}}

    def _job_event(self, job_id: int, state: str, level: int = logging.INFO, **values: Any) -> None:
        """The structured ``job_state`` line (and a recent error on the status page for failures)."""
        study = self.spool._tx("SELECT study_uid FROM jobs WHERE id=?", (job_id,))
        key = study_key(study[0][0]) if study else "?"
        detail = "".join(f", {k}={v}" for k, v in values.items() if v is not None)
        logger.log(level, "job %d (study %s): %s%s", job_id, key, state, detail,
                   extra=fields("job_state", job=job_id, study=key, state=state, **values))
        if state in ("failed", "send_failed", "retry"):
            self.metrics.error(f"job {job_id} {state}", study=key, **values)

    def _retention(self) -> None:
        c = self.config
        if (c.retention_max_age_s is None and c.retention_max_bytes is None) or \
                time.time() - self._retention_at < c.retention_every_s:
            return
        self._retention_at = time.time()
        report = purge(self.spool, max_age_s=c.retention_max_age_s, max_bytes=c.retention_max_bytes)
        if report.studies:
            self._spool_bytes = (0.0, 0)
            logger.info("retention: %d studies, %d jobs, %.1f MB removed", report.studies, report.jobs,
                        report.bytes_freed / 1e6, extra=fields("retention", **report.to_dict()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self._server:
            self._server.shutdown()
            self._server = None
        if self.http is not None:
            self.http.stop()
            self.http = None
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
                self._promote()
                self._reap()
                self._launch()
                self._send_due()
                self._retention()
            except Exception:  # noqa: BLE001 - the scheduler must survive anything and log it
                logger.exception("scheduler step failed")

    def _set_study(self, study_uid: str, state: str, reason: str | None = None, checked: str | None = None) -> None:
        self.spool._tx("UPDATE studies SET state=?, reason=?, checked_signature=coalesce(?, checked_signature) "
                       "WHERE study_uid=?", (state, reason, checked, study_uid))

    def _promote(self) -> None:
        """Quiet studies become jobs when complete; others wait, end incomplete, or have nothing to analyse."""
        c = self.config
        now = time.time()
        due = self.spool._tx(
            "SELECT study_uid, last_received, state, analysed_signature, checked_signature, conflicts, reason "
            "FROM studies WHERE state IN ('receiving', 'waiting') AND last_received <= ?", (now - c.stable_s,))
        for study_uid, last, state, done_sig, checked_sig, conflicts, reason in due:
            if self.spool._tx("SELECT 1 FROM jobs WHERE study_uid=? AND state IN ('queued','running')", (study_uid,)):
                continue  # wait until the running job of this study is over
            key = study_key(study_uid)
            if conflicts:
                why = (f"{conflicts} instance(s) received again with different pixels; resolve with `zeroclick "
                       f"listen --spool DIR --resolve {key} --keep first|latest`")
                self._set_study(study_uid, "conflicting_instances", why)
                logger.warning("study %s not analysed: %s", key, why)
                continue
            sig = self.spool.signature(study_uid)
            if sig == done_sig:
                self._set_study(study_uid, "done", None)
                continue
            quiet_s = now - last
            if state == "waiting" and sig == checked_sig:
                if quiet_s > c.max_wait_s:
                    self._set_study(study_uid, "incomplete", reason)
                    logger.warning("study %s incomplete after %.0f s without news, nothing analysed or sent: %s",
                                   key, quiet_s, reason)
                continue
            try:
                readiness = assess(self.spool.study_files(study_uid), mode=c.completeness)
            except Exception as exc:  # noqa: BLE001 - an unreadable study waits (and ends incomplete), named
                logger.warning("study %s: completeness check failed (%s)", key, type(exc).__name__)
                readiness = None
                self._set_study(study_uid, "waiting", f"completeness check failed: {type(exc).__name__}", sig)
            if readiness is None:
                continue
            if readiness.state == "ready":
                with self.spool.transaction() as db:
                    db.execute("INSERT INTO jobs(study_uid, signature, state, created, last_received) "
                               "VALUES (?,?,'queued',?,?)", (study_uid, sig, now, last))
                    db.execute("UPDATE studies SET state='queued', reason=NULL, checked_signature=? "
                               "WHERE study_uid=?", (sig, study_uid))
                    job_id = db.execute("SELECT last_insert_rowid()").fetchone()[0]
                n = self.spool._tx("SELECT COUNT(*) FROM instances WHERE study_uid=?", (study_uid,))[0][0]
                logger.info("study %s stable and complete: %d instances (%d received since this process started)",
                            key, n, self._receiving.pop(key, 0),
                            extra=fields("study_stable", study=key, instances=n, job=job_id))
                self._job_event(job_id, "queued")
            elif readiness.state == "nothing_to_analyse":
                self._set_study(study_uid, "nothing_to_analyse", readiness.reason, sig)
                logger.info("study %s: nothing to analyse (%s)", key, readiness.reason)
            else:
                final = quiet_s > c.max_wait_s
                self._set_study(study_uid, "incomplete" if final else "waiting", readiness.reason, sig)
                logger.info("study %s %s: %s", key, "incomplete" if final else "waiting for more images",
                            readiness.reason)

    def _launch(self) -> None:
        free = self.config.workers - len(self._running)
        if free <= 0:
            return
        for job_id, study_uid, attempts in self.spool._tx(
                "SELECT id, study_uid, attempts FROM jobs WHERE state='queued' ORDER BY id LIMIT ?", (free,)):
            if attempts >= self.config.max_attempts:
                set_job_state(self.spool, job_id, "failed", error=f"failed {attempts} times")
                self._job_event(job_id, "failed", logging.ERROR, attempts=attempts)
                continue
            last = self.spool._tx("SELECT last_received FROM studies WHERE study_uid=?", (study_uid,))
            if last and time.time() - last[0][0] < self.config.stable_s:
                continue  # images arrived after the job was queued (e.g. a resend after a restart): wait
            job_dir = self.spool.path_for("jobs", str(int(job_id)), f"attempt{int(attempts) + 1}")
            in_dir, out_dir = job_dir / "in", job_dir / "out"
            shutil.rmtree(job_dir, ignore_errors=True)
            in_dir.mkdir(parents=True)
            for path in sorted(self.spool.study_files(study_uid)):
                target = inside(in_dir, in_dir / path.name)  # path.name is "<validated UID>.dcm"
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copy2(path, target)
            # the signature of what is analysed (the study may have grown since the job was queued)
            self.spool._tx("UPDATE jobs SET signature=? WHERE id=?", (self.spool.signature(study_uid), job_id))
            cmd = [sys.executable, "-m", "zeroclick.pipelines.pacs.analysis", str(in_dir), str(out_dir)]
            if self.config.analysis:
                cmd += ["--analysis", self.config.analysis]
            env = dict(os.environ, **self.config.extra_env)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                    preexec_fn=_set_pdeathsig if sys.platform.startswith("linux") else None)
            self.spool._tx("UPDATE jobs SET state='running', attempts=attempts+1, started=? WHERE id=?",
                           (time.time(), job_id))
            self._running[job_id] = (proc, time.time())
            self._job_event(job_id, "running", attempt=int(attempts) + 1)

    def _outputs_inside(self, job_id: int, outputs: list[str]) -> list[str]:
        """The analysis' output paths, each checked to lie inside its job folder."""
        job_dir = self.spool.path_for("jobs", str(int(job_id)))
        return [str(inside(job_dir, Path(p))) for p in outputs]

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
                try:
                    outputs = self._outputs_inside(job_id, list(answer["outputs"]))
                except UnsafeNameError as exc:
                    set_job_state(self.spool, job_id, "failed", error=str(exc))
                    self._job_event(job_id, "failed", logging.ERROR, error="an output lies outside its job folder")
                    continue
                supersedes = self._supersede(job_id, outputs)
                state = "analysed" if self._destination_of(job_id) else "done"
                self.spool._tx("UPDATE jobs SET state=?, finished=?, outputs=?, next_send_at=?, supersedes=? "
                               "WHERE id=?", (state, time.time(), json.dumps(outputs), time.time(), supersedes,
                                              job_id))
                self._mark_study_analysed(job_id)
                seconds = answer.get("seconds")
                if isinstance(seconds, (int, float)):
                    self.metrics.observe_analysis(float(seconds))
                self.metrics.inc("zeroclick_jobs_finished_total", outcome="analysed")
                self._job_event(job_id, state, outputs=len(outputs),
                                analysis_s=round(seconds, 2) if isinstance(seconds, (int, float)) else None)
            else:
                self._job_failed(job_id, answer, err, proc.returncode)

    def _job_failed(self, job_id: int, answer: dict[str, Any], err: str, returncode: int) -> None:
        """A permanent input error fails the job (and its study) at once; anything else is retried."""
        from zeroclick.pipelines.pacs.analysis import EXIT_PERMANENT

        reason = str(answer.get("error") or (err.strip().splitlines() or [f"killed (exit {returncode})"])[-1])[:500]
        attempts = self.spool._tx("SELECT attempts FROM jobs WHERE id=?", (job_id,))[0][0]
        self.spool._tx("UPDATE jobs SET finished=? WHERE id=?", (time.time(), job_id))
        if returncode == EXIT_PERMANENT or answer.get("permanent"):
            set_job_state(self.spool, job_id, "failed", error=f"permanent: {reason}")
            self.metrics.inc("zeroclick_jobs_finished_total", outcome="failed")
            self._job_event(job_id, "failed", logging.ERROR, error=reason, retried=False,
                            hint=f"fix the input or the analysis, then `zeroclick jobs retry {job_id}`")
        elif attempts >= self.config.max_attempts:
            set_job_state(self.spool, job_id, "failed", error=f"failed {attempts} times; last: {reason}")
            self.metrics.inc("zeroclick_jobs_finished_total", outcome="failed")
            self._job_event(job_id, "failed", logging.ERROR, error=reason, attempts=attempts,
                            hint=f"`zeroclick jobs retry {job_id}` once the cause is fixed")
        else:
            set_job_state(self.spool, job_id, "queued", error=reason)
            self.metrics.inc("zeroclick_jobs_finished_total", outcome="retry")
            self._job_event(job_id, "retry", logging.WARNING, error=reason,
                            attempt=f"{attempts} of {self.config.max_attempts}")

    def _destination_of(self, job_id: int) -> str | None:
        """Where this job's results go: its study's sender's own destination (``destinations``), else the default."""
        if self.config.destinations:
            row = self.spool._tx("SELECT calling_aet FROM instances WHERE study_uid=(SELECT study_uid FROM jobs "
                                 "WHERE id=?) ORDER BY received_at DESC LIMIT 1", (job_id,))
            if row and row[0][0] in self.config.destinations:
                return self.config.destinations[row[0][0]]
        return self.config.destination

    def _supersede(self, job_id: int, outputs: list[str]) -> int | None:
        """Mark the study's earlier result set as replaced by this one; returns the earlier job id."""
        from zeroclick.pipelines.pacs.supersede import link_predecessor

        earlier = self.spool._tx(
            "SELECT id, outputs, state FROM jobs WHERE study_uid=(SELECT study_uid FROM jobs WHERE id=?) AND id<? "
            "AND state IN ('sent', 'analysed', 'send_failed', 'done') ORDER BY id DESC LIMIT 1", (job_id, job_id))
        if not earlier:
            return None
        old_id, old_outputs, old_state = earlier[0]
        link_predecessor([Path(p) for p in outputs], [Path(p) for p in json.loads(old_outputs or "[]")])
        if old_state == "analysed":  # not sent yet: the newer results go instead
            self.spool._tx("UPDATE jobs SET state='superseded' WHERE id=?", (old_id,))
        logger.info("job %d supersedes job %d (the study changed after its analysis)", job_id, old_id)
        return int(old_id)

    def _mark_study_analysed(self, job_id: int) -> None:
        self.spool._tx("UPDATE studies SET analysed_signature=(SELECT signature FROM jobs WHERE id=?), "
                       "state=CASE WHEN state='queued' THEN 'done' ELSE state END "
                       "WHERE study_uid=(SELECT study_uid FROM jobs WHERE id=?)", (job_id, job_id))

    def _send_due(self) -> None:
        for job_id, outputs, n in self.spool._tx(
                "SELECT id, outputs, send_attempts FROM jobs WHERE state='analysed' AND next_send_at <= ?",
                (time.time(),)):
            destination = self._destination_of(job_id)
            if not destination:
                set_job_state(self.spool, job_id, "done")
                continue
            report = send_files(json.loads(outputs), destination, calling_aet=self.config.ae_title, retries=0)
            self.metrics.inc("zeroclick_sends_total", outcome="ok" if report.ok else "failed")
            key = study_key(self.spool._tx("SELECT study_uid FROM jobs WHERE id=?", (job_id,))[0][0])
            logger.log(logging.INFO if report.ok else logging.WARNING, "job %d: %d of %d results sent to %s", job_id,
                       len(report.stored), len(json.loads(outputs)), report.destination,
                       extra=fields("send", job=job_id, study=key, destination=report.destination,
                                    stored=len(report.stored), failed=len(report.failed), attempt=n + 1))
            if report.ok:
                with self.spool.transaction() as db:
                    db.execute("UPDATE jobs SET sent_at=?, send_attempts=? WHERE id=?", (time.time(), n + 1, job_id))
                    set_job_state(self.spool, job_id, "sent", db=db)
                self._job_event(job_id, "sent", destination=report.destination)
                continue
            self.metrics.inc("zeroclick_send_failures_total")
            if n + 1 > self.config.send_retries:
                with self.spool.transaction() as db:
                    db.execute("UPDATE jobs SET send_attempts=? WHERE id=?", (n + 1, job_id))
                    set_job_state(self.spool, job_id, "send_failed", db=db,
                                  error="; ".join(r for _, r in report.failed)[:500])
                self._job_event(job_id, "send_failed", logging.ERROR, attempts=n + 1,
                                hint=f"`zeroclick jobs retry {job_id}` once {report.destination} answers")
            else:
                wait = self.config.send_backoff_s * 2 ** n
                self.spool._tx("UPDATE jobs SET send_attempts=?, next_send_at=? WHERE id=?",
                               (n + 1, time.time() + wait, job_id))
                logger.warning("job %d: send failed, retry in %.0f s", job_id, wait)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zeroclick.pipelines.pacs.listener`` = ``zeroclick listen``."""
    from zeroclick.pipelines.commands.listen import build_parser, run_from_args

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run_from_args(build_parser().parse_args(argv))
    except InvalidInputError as exc:
        sys.stderr.write(f"zeroclick listen: {exc}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
