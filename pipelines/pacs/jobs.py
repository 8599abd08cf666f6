"""Inspect, re-queue and clean the listener's jobs; spool retention by age and size (``zeroclick jobs``).

Job states: ``queued`` -> ``running`` -> ``analysed`` (results waiting to be sent) -> ``sent``; without a
destination ``done``; ``failed`` (a permanent input error, or transient failures ``max_attempts`` times);
``send_failed`` (every send retry failed); ``superseded`` (a newer analysis of the same study replaced it before it
was sent). Each study's state follows its latest job: ``queued`` while it waits or runs, ``done`` once analysed,
``failed`` / ``send_failed`` with its job.

These functions work on a :class:`~zeroclick.pipelines.pacs.spool.Spool` whether or not a listener is running
(SQLite in WAL mode; each change is one transaction, and a running listener picks it up at its next step).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeroclick.imaging.errors import InvalidInputError
from zeroclick.pipelines.pacs.spool import Spool, study_key

__all__ = ["FINISHED_STUDY_STATES", "PurgeReport", "job_record", "list_jobs", "purge", "retry_job", "set_job_state"]

logger = logging.getLogger(__name__)

#: Study states after which nothing more happens unless new images arrive: these studies may be purged.
FINISHED_STUDY_STATES = ("done", "failed", "send_failed", "incomplete", "nothing_to_analyse")
_ACTIVE_JOB_STATES = ("queued", "running", "analysed")
_COLUMNS = ("id", "study_uid", "state", "attempts", "send_attempts", "created", "started", "finished", "sent_at",
            "error", "outputs", "supersedes")
_STUDY_STATE_OF_JOB = {"queued": "queued", "running": "queued", "analysed": "done", "sent": "done", "done": "done",
                       "failed": "failed", "send_failed": "send_failed"}


def _job_dir(spool: Spool, job_id: int) -> Path:
    return spool.path_for("jobs", str(int(job_id)))


def _report_of(spool: Spool, job_id: int, outputs: list[str]) -> Path | None:
    """The job's ``report.json`` (written by the analysis beside its DICOM outputs), if any."""
    folders = {Path(p).parent for p in outputs}
    job_dir = _job_dir(spool, job_id)
    if not folders and job_dir.is_dir():  # failed jobs: the latest attempt's out folder
        attempts = sorted(job_dir.glob("attempt*/out"), key=lambda p: int(p.parent.name[7:] or 0))
        folders = set(attempts[-1:])
    for folder in folders:
        candidate = folder / "report.json"
        if candidate.is_file():
            return candidate
    return None


def _qc_summary(report: Path | None) -> str | None:
    """``ok`` / ``partial`` / ... plus the number of QC flags, read from report.json (no patient attribute)."""
    if report is None:
        return None
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return "report.json unreadable"
    qc = data.get("qc") or []
    errors = sum(1 for q in qc if isinstance(q, dict) and q.get("severity") == "error")
    return f"{data.get('status', '?')}; {errors} error / {len(qc) - errors} other QC flags"


def job_record(spool: Spool, row: tuple) -> dict[str, Any]:
    """One job as a JSON-ready dict: study by hash, timings in seconds, QC status and report.json path."""
    job = dict(zip(_COLUMNS, row))
    job["study"] = study_key(job.pop("study_uid"))
    job["outputs"] = json.loads(job["outputs"]) if job["outputs"] else []
    started, finished = job["started"], job["finished"]
    job["analysis_s"] = round(finished - started, 3) if started and finished and finished >= started else None
    report = _report_of(spool, job["id"], job["outputs"])
    job["report_json"] = str(report) if report else None
    job["qc"] = _qc_summary(report)
    return job


def list_jobs(spool: Spool, *, limit: int | None = None, state: str | None = None) -> list[dict[str, Any]]:
    """Jobs, newest first (all, or ``limit``), optionally only those in ``state``."""
    sql = f"SELECT {', '.join(_COLUMNS)} FROM jobs"
    args: list[Any] = []
    if state:
        sql += " WHERE state=?"
        args.append(state)
    sql += " ORDER BY id DESC"
    if limit:
        sql += " LIMIT ?"
        args.append(int(limit))
    return [job_record(spool, r) for r in spool._tx(sql, args)]


def _get(spool: Spool, job_id: int) -> tuple:
    rows = spool._tx(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id=?", (int(job_id),))
    if not rows:
        raise InvalidInputError(f"no job {job_id} in this spool: see `zeroclick jobs list --spool DIR`")
    return rows[0]


def show_job(spool: Spool, job_id: int) -> dict[str, Any]:
    return job_record(spool, _get(spool, job_id))


def set_job_state(spool: Spool, job_id: int, state: str, *, error: str | None = None, db=None) -> None:
    """Set a job's state and its study's matching state in one transaction (so the two always agree)."""
    sql = ("UPDATE jobs SET state=?, error=coalesce(?, error) WHERE id=?",
           "UPDATE studies SET state=?, reason=? WHERE study_uid=(SELECT study_uid FROM jobs WHERE id=?) "
           "AND state NOT IN ('receiving', 'waiting')")
    study_state = _STUDY_STATE_OF_JOB.get(state)

    def apply(conn) -> None:
        conn.execute(sql[0], (state, error, int(job_id)))
        if study_state:
            conn.execute(sql[1], (study_state, error if state in ("failed", "send_failed") else None, int(job_id)))

    if db is not None:
        apply(db)
    else:
        with spool.transaction() as conn:
            apply(conn)


def retry_job(spool: Spool, job_id: int) -> dict[str, Any]:
    """Re-queue a ``failed`` job (analysed again from its first attempt) or a ``send_failed`` one (sent again).

    Raises
    ------
    InvalidInputError
        When the job does not exist or is in another state (say which).
    """
    job = dict(zip(_COLUMNS, _get(spool, job_id)))
    if job["state"] == "failed":
        with spool.transaction() as db:
            db.execute("UPDATE jobs SET attempts=0, error=NULL, finished=NULL WHERE id=?", (int(job_id),))
            set_job_state(spool, job_id, "queued", db=db)  # its study too, unless new images are arriving
    elif job["state"] == "send_failed":
        with spool.transaction() as db:
            db.execute("UPDATE jobs SET send_attempts=0, next_send_at=?, error=NULL WHERE id=?",
                       (time.time(), int(job_id)))
            set_job_state(spool, job_id, "analysed", db=db)
    else:
        raise InvalidInputError(f"job {job_id} is {job['state']}: only failed or send_failed jobs can be retried")
    logger.warning("job %d re-queued by command (was %s)", int(job_id), job["state"])
    return show_job(spool, job_id)


@dataclass(frozen=True)
class PurgeReport:
    """What :func:`purge` removed (or would remove with ``dry_run``)."""

    studies: int
    jobs: int
    bytes_freed: int
    spool_bytes_before: int
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _tree_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def purge(spool: Spool, *, max_age_s: float | None = None, max_bytes: int | None = None, dry_run: bool = False,
          now: float | None = None) -> PurgeReport:
    """Remove finished studies (received files, kept versions, job folders and rows), oldest first.

    A study goes when it is finished (:data:`FINISHED_STUDY_STATES`, no job queued, running or waiting to be
    sent) and its last image is older than ``max_age_s``, or while the spool holds more than ``max_bytes``.
    Studies still receiving, waiting, queued or in conflict are never removed.
    """
    from zeroclick.pipelines.pacs.observe import spool_bytes

    now = time.time() if now is None else now
    before = spool_bytes(spool.root)
    marks = ",".join("?" * len(FINISHED_STUDY_STATES))
    active = ",".join("?" * len(_ACTIVE_JOB_STATES))
    candidates = spool._tx(
        f"SELECT study_uid, last_received FROM studies WHERE state IN ({marks}) AND study_uid NOT IN "
        f"(SELECT study_uid FROM jobs WHERE state IN ({active})) ORDER BY last_received",
        (*FINISHED_STUDY_STATES, *_ACTIVE_JOB_STATES))
    size, freed, studies, jobs = before, 0, 0, 0
    for study_uid, last in candidates:
        too_old = max_age_s is not None and now - last > max_age_s
        too_big = max_bytes is not None and size > max_bytes
        if not (too_old or too_big):
            continue
        key = study_key(study_uid)
        with spool.transaction() as db:
            # checked again under the write lock: an image that arrived meanwhile makes the study "receiving"
            row = db.execute("SELECT state, last_received FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
            busy = db.execute(f"SELECT 1 FROM jobs WHERE study_uid=? AND state IN ({active})",
                              (study_uid, *_ACTIVE_JOB_STATES)).fetchone()
            if row is None or row[0] not in FINISHED_STUDY_STATES or row[1] != last or busy:
                continue
            files = [spool.path_for(p) for (p,) in db.execute(
                "SELECT path FROM instances WHERE study_uid=? UNION ALL SELECT path FROM duplicates WHERE study_uid=?",
                (study_uid, study_uid))]
            job_ids = [int(j) for (j,) in db.execute("SELECT id FROM jobs WHERE study_uid=?", (study_uid,))]
            if not dry_run:
                for table in ("instances", "duplicates", "jobs", "studies"):
                    db.execute(f"DELETE FROM {table} WHERE study_uid=?", (study_uid,))
        job_dirs = [_job_dir(spool, j) for j in job_ids]
        n = sum(f.stat().st_size for f in files if f.is_file()) + sum(_tree_bytes(d) for d in job_dirs)
        if not dry_run:
            # only the files the database listed: one being written for a new image right now is not touched
            for f in files:
                f.unlink(missing_ok=True)
            for folder in (spool.path_for("studies", key), spool.path_for("duplicates", key)):
                try:
                    folder.rmdir()  # only when empty
                except OSError:
                    pass
            for d in job_dirs:
                shutil.rmtree(d, ignore_errors=True)
            logger.info("study %s purged (%s): %d jobs, %.1f MB", key, "age" if too_old else "spool size",
                        len(job_ids), n / 1e6)
        size -= n
        freed += n
        studies += 1
        jobs += len(job_ids)
    return PurgeReport(studies=studies, jobs=jobs, bytes_freed=freed, spool_bytes_before=before, dry_run=dry_run)
