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
    associations are rejected and C-STOREs answered 0xA700. Received data is never deleted.

Scheduling (one thread)
    A study quiet for ``stable_s`` seconds (measured from the wall-clock time of its last instance, stored in
    the database, so it survives restarts) is analysed only when it is complete by its own geometry
    (:mod:`zeroclick.pipelines.pacs.completeness`); otherwise it waits, and after ``max_wait_s`` without news it
    ends as ``incomplete`` with the reason, and nothing is sent. A study with conflicting instances is not
    analysed until the conflict is resolved (``zeroclick listen --resolve``). A study with nothing to analyse
    (a lone localizer) says so instead of failing. Jobs run in worker processes (``python -m
    zeroclick.pipelines.pacs.analysis``, killed with the listener through PR_SET_PDEATHSIG) on a hard-linked
    snapshot of the study. Outputs are sent by C-STORE with retries and exponential backoff; a job is marked
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
        if config.destination:
            parse_destination(config.destination)  # fail early on a bad destination
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
            self.spool.store(info, path, calling_aet=calling)
        except UnsafeNameError as exc:
            logger.warning("C-STORE from %s refused (0xC000): %s", calling, exc)
            return _failure(STATUS_CANNOT_UNDERSTAND, str(exc))
        except OSError as exc:
            logger.error("spool write failed (%s): C-STORE refused (0xA700)", type(exc).__name__)
            return STATUS_OUT_OF_RESOURCES
        return STATUS_SUCCESS

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
        self.guard = ConnectionGuard(self.config.limits, allowed_aets=self.config.allowed_aets, disk_ok=self.disk_ok)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_OPEN, set_tcp_nodelay),
                    (evt.EVT_REQUESTED, self.guard.on_requested)]
        self._server = start_guarded_server(ae, (self.config.host, self.config.port), guard=self.guard,
                                            evt_handlers=handlers, ssl_context=self._ssl_context())
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
                self._promote()
                self._reap()
                self._launch()
                self._send_due()
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
                self.spool._tx("UPDATE jobs SET state='failed', error=coalesce(error, 'too many attempts') "
                               "WHERE id=?", (job_id,))
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
            logger.info("job %d (study %s) started", job_id, study_key(study_uid))

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
                    self.spool._tx("UPDATE jobs SET state='failed', error=? WHERE id=?", (str(exc), job_id))
                    logger.error("job %d failed: an output lies outside its job folder", job_id)
                    continue
                supersedes = self._supersede(job_id, outputs)
                state = "analysed" if self.config.destination else "done"
                self.spool._tx("UPDATE jobs SET state=?, finished=?, outputs=?, next_send_at=?, supersedes=? "
                               "WHERE id=?", (state, time.time(), json.dumps(outputs), time.time(), supersedes,
                                              job_id))
                self._mark_study_analysed(job_id)
                logger.info("job %d analysed: %d outputs", job_id, len(outputs))
            else:
                reason = answer.get("error") or (err.strip().splitlines() or ["killed"])[-1]
                self.spool._tx("UPDATE jobs SET state='queued', error=? WHERE id=?", (reason[:500], job_id))
                logger.warning("job %d failed (%s); it will be retried up to %d attempts", job_id, reason,
                               self.config.max_attempts)

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
    try:
        return run_from_args(build_parser().parse_args(argv))
    except InvalidInputError as exc:
        sys.stderr.write(f"zeroclick listen: {exc}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
