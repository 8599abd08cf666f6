"""The cohort runner and its local backend: one unit after another, or ``workers`` processes on one machine.

Every unit goes through :func:`process_unit`, whichever backend runs it:

1. the unit is processed into a private temporary folder ``OUT/.partial/<id>~<random>/``;
2. on success every file is synced and the folder renamed to ``OUT/<id>/`` (a previous version is moved
   aside first and deleted after), so ``OUT/<id>/`` only ever holds a complete set of outputs;
3. any exception becomes a ``failed`` manifest row and the temporary folder is removed.

With ``workers > 1`` each worker is a separate process that loads the models once; a worker that dies
(segmentation fault, out-of-memory kill) fails only the unit it held, and a fresh worker takes its place.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Literal

from zeroclick.imaging.errors import AnalysisError, InvalidInputError
from zeroclick.pipelines.cohort.kinds import Unit, UnitKind, discover_units, get_kind
from zeroclick.pipelines.cohort.manifest import (
    ManifestRow,
    ManifestWriter,
    compact_manifest,
    ids_in,
    read_manifests,
)
from zeroclick.pipelines.cohort.shards import Shard, parse_shard, select_shard

logger = logging.getLogger(__name__)

Backend = Literal["local", "ray"]
BACKENDS: tuple[str, ...] = ("local", "ray")
PARTIAL_DIR = ".partial"
PARTIAL_SEPARATOR = "~"  # never in a unit id, so a temporary folder's unit is unambiguous
MAX_WARNINGS_PER_UNIT = 20


@dataclass(frozen=True)
class UnitJob:
    """Everything a worker needs besides the unit itself (small and picklable)."""

    kind: UnitKind
    out_dir: str
    weights_id: str
    version: str
    shard: str
    backend: str
    device: str


@dataclass(frozen=True)
class CohortRun:
    """The outcome of one ``run_cohort`` call (one shard).

    ``rows`` has one :class:`ManifestRow` per unit of the shard, in id order, including the units that
    ``resume`` skipped (their earlier row); ``skipped`` names those.
    """

    kind: str
    out_dir: str
    shard: str
    backend: str
    workers: int
    manifest: str
    rows: tuple[ManifestRow, ...]
    skipped: tuple[str, ...]
    seconds: float

    @property
    def n_ok(self) -> int:
        """Units whose outputs are published (including skipped ones)."""
        return sum(r.ok for r in self.rows)

    @property
    def n_failed(self) -> int:
        """Units that failed."""
        return len(self.rows) - self.n_ok

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the per-unit rows, which are in the manifest)."""
        return {
            "kind": self.kind,
            "out_dir": self.out_dir,
            "shard": self.shard,
            "backend": self.backend,
            "workers": self.workers,
            "manifest": self.manifest,
            "units": len(self.rows),
            "ok": self.n_ok,
            "failed": self.n_failed,
            "skipped": len(self.skipped),
            "processed": len(self.rows) - len(self.skipped),
            "seconds": round(self.seconds, 3),
        }


def run_cohort(
    kind: UnitKind | str,
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    shard: Shard | str | None = None,
    resume: bool = False,
    workers: int = 1,
    backend: Backend = "local",
    device: str = "auto",
    ray_address: str | None = None,
    gpus_per_worker: float = 1.0,
    on_row: Callable[[ManifestRow], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> CohortRun:
    """Run every unit of a cohort shard and write ``manifest.jsonl`` next to the per-unit output folders.

    Parameters
    ----------
    kind
        ``"cmr"``, ``"slide"``, another registered name, or a :class:`UnitKind`.
    inputs
        Folders (their children are the units), globs, CSV files (column ``path``, optional ``id``) or unit files.
    out_dir
        Output folder; unit ``id`` writes ``out_dir/id/``; the manifest is ``out_dir/manifest.jsonl``
        (``manifest.shard-i-of-N.jsonl`` for a shard).
    shard
        ``"i/N"`` or a :class:`Shard`: only units ``i, i+N, ...`` of the id-sorted list.
    resume
        Skip units with an ``ok`` row made with the same weights id and version whose outputs still exist.
    workers
        Local processes (``backend="local"``) or Ray actors (``backend="ray"``; default one per CPU of the cluster).
    backend
        ``"local"`` or ``"ray"`` (needs the ``zeroclick[ray]`` extra; imported only then).
    device
        Passed to the kind's ``load`` (``"auto"``, ``"cpu"``, ``"cuda"``).
    ray_address
        Ray cluster address (``"auto"`` inside a cluster); ``None`` starts or reuses a local Ray.
    gpus_per_worker
        GPUs each Ray actor requests when the cluster has GPUs.
    on_row
        Called with each new manifest row as units finish (progress bars).
    on_start
        Called once with the number of units about to be processed.

    Returns
    -------
    CohortRun
        The rows of this shard and counts; failures are rows, never exceptions.

    Raises
    ------
    InvalidInputError
        Bad inputs, shard or option values.
    WeightsError, ImportError
        The kind's models or pipeline are not available (raised before any unit runs).
    """
    t0 = time.perf_counter()
    unit_kind = get_kind(kind)
    the_shard = shard if isinstance(shard, Shard) else parse_shard(shard)
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
    if workers < 0 or (workers == 0 and backend == "local"):
        raise InvalidInputError(f"workers must be >= 1 (0 means one per CPU with the ray backend), got {workers}")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)

    all_units = discover_units(inputs, unit_kind)
    by_id = {u.id: u for u in all_units}
    units = [by_id[i] for i in select_shard(list(by_id), the_shard)]
    weights_id, version = unit_kind.weights_id(), unit_kind.version()
    job = UnitJob(unit_kind, str(out), weights_id, version, str(the_shard), backend, device)
    logger.info("cohort %s: %d units in total, %d in shard %s", unit_kind.name, len(all_units), len(units), the_shard)

    manifest_path = out / the_shard.manifest_name
    previous = read_manifests(out) if resume else {}
    done = {u.id: previous[u.id] for u in units if u.id in previous and previous[u.id].is_current(
        out, weights_id=weights_id, version=version)}
    todo = [u for u in units if u.id not in done]
    _clear_partials(out, todo)

    rows: dict[str, ManifestRow] = {}
    with ManifestWriter(manifest_path) as writer:
        own = ids_in(manifest_path)
        for uid, row in done.items():
            rows[uid] = row
            if uid not in own:  # keep one row per unit in this shard's manifest
                writer.append(row)

        def emit(row: ManifestRow) -> None:
            writer.append(row)
            rows[row.id] = row
            if on_row is not None:
                on_row(row)

        if on_start is not None:
            on_start(len(todo))
        if todo:
            if backend == "ray":
                from zeroclick.pipelines.cohort.ray_backend import run_units_ray

                run_units_ray(job, todo, emit, workers=workers, address=ray_address, gpus_per_worker=gpus_per_worker)
            elif workers == 1:
                _run_in_process(job, todo, emit)
            else:
                _run_in_processes(job, todo, emit, workers=workers)
    compact_manifest(manifest_path, [u.id for u in units])
    result = CohortRun(
        kind=unit_kind.name,
        out_dir=str(out),
        shard=str(the_shard),
        backend=backend,
        workers=workers,
        manifest=str(manifest_path),
        rows=tuple(rows[u.id] for u in units),
        skipped=tuple(sorted(done)),
        seconds=time.perf_counter() - t0,
    )
    logger.info("cohort %s shard %s: %d ok, %d failed, %d skipped", unit_kind.name, the_shard,
                result.n_ok, result.n_failed, len(result.skipped))
    return result


def _clear_partials(out: Path, units: Sequence[Unit]) -> None:
    """Remove temporary folders that a killed run left for these units (never other shards' units)."""
    partial = out / PARTIAL_DIR
    if not partial.is_dir():
        return
    ids = {u.id for u in units}
    for child in partial.iterdir():
        if child.name.rsplit(PARTIAL_SEPARATOR, 1)[0] in ids:
            shutil.rmtree(child, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------
# One unit (shared by every backend)


def process_unit(job: UnitJob, context: Any, unit: Unit, *, worker: str = "") -> ManifestRow:
    """Process one unit into ``job.out_dir/unit.id`` atomically and describe the outcome as a manifest row.

    Never raises for a failure of the unit itself: the exception becomes ``status="failed"`` with
    ``error="Type: message"`` and any earlier outputs of the unit are left as they were.
    """
    out = Path(job.out_dir)
    partial = out / PARTIAL_DIR
    partial.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f"{unit.id}{PARTIAL_SEPARATOR}", dir=partial))
    error: str | None = None
    outputs: tuple[str, ...] = ()
    summary: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            summary = _json_ready(job.kind.process(context, Path(unit.path), tmp) or {})
            files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
            if not files:
                raise AnalysisError("the pipeline finished but wrote no output files")
            _sync_tree(tmp)
            _publish(tmp, out / unit.id)
            outputs = tuple(f"{unit.id}/{f}" for f in files)
        except Exception as exc:  # one failing unit never stops the cohort
            error = f"{type(exc).__name__}: {exc}"
            logger.warning("a %s unit failed: %s", job.kind.name, type(exc).__name__)
            logger.debug("unit failure", exc_info=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    messages = list(dict.fromkeys(str(w.message) for w in caught))[:MAX_WARNINGS_PER_UNIT]
    return ManifestRow(
        id=unit.id,
        status="failed" if error else "ok",
        outputs=outputs,
        seconds=round(time.perf_counter() - t0, 3),
        weights_id=job.weights_id,
        version=job.version,
        error=error,
        input=unit.path,
        kind=job.kind.name,
        shard=job.shard,
        backend=job.backend,
        worker=worker,
        warnings=tuple(messages),
        summary=summary,
        finished_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
    )


def failed_row(job: UnitJob, unit: Unit, error: str, *, seconds: float, worker: str) -> ManifestRow:
    """A ``failed`` row for a unit whose worker died before it could report."""
    return ManifestRow(
        id=unit.id, status="failed", outputs=(), seconds=round(seconds, 3), weights_id=job.weights_id,
        version=job.version, error=error, input=unit.path, kind=job.kind.name, shard=job.shard,
        backend=job.backend, worker=worker,
        finished_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
    )


def _json_ready(summary: Any) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(summary), default=str))
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"the unit summary is not JSON-serialisable: {exc}") from exc


def _sync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _publish(tmp: Path, final: Path) -> None:
    """Rename a finished temporary folder into place; an older version is moved aside, then deleted."""
    if final.exists():
        old = tmp.with_name(tmp.name + ".old")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


# --------------------------------------------------------------------------------------------------------
# Local backend


def _run_in_process(job: UnitJob, units: Sequence[Unit], emit: Callable[[ManifestRow], None]) -> None:
    context = job.kind.load(job.device)
    worker = f"local-{os.getpid()}"
    for unit in units:
        emit(process_unit(job, context, unit, worker=worker))


def _worker_main(conn: Connection, job: UnitJob, threads: int) -> None:
    """Body of a worker process: load once, then process the units the parent sends until ``None``."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    try:
        context = job.kind.load(job.device)
    except BaseException as exc:
        conn.send(("load_failed", exc))
        return
    conn.send(("ready", None))
    worker = f"local-{os.getpid()}"
    while True:
        unit = conn.recv()
        if unit is None:
            return
        conn.send(("row", process_unit(job, context, unit, worker=worker)))


class _Worker:
    def __init__(self, ctx: Any, job: UnitJob, threads: int) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, job, threads), daemon=True)
        self.proc.start()
        child.close()
        self.unit: Unit | None = None
        self.started = 0.0
        self.ready = False

    @property
    def name(self) -> str:
        return f"local-{self.proc.pid}"

    def send(self, unit: Unit) -> None:
        self.unit, self.started = unit, time.perf_counter()
        self.conn.send(unit)

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _run_in_processes(
    job: UnitJob, units: Sequence[Unit], emit: Callable[[ManifestRow], None], *, workers: int
) -> None:
    ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold torch threads
    n = min(workers, len(units))
    threads = max(1, (os.cpu_count() or 1) // n)
    queue = deque(units)
    pool = [_Worker(ctx, job, threads) for _ in range(n)]
    try:
        while queue or any(w.unit for w in pool):
            for w in pool:
                if w.ready and w.unit is None and queue:
                    w.send(queue.popleft())
            ready = set(wait([w.conn for w in pool] + [w.proc.sentinel for w in pool]))
            survivors = []
            for w in pool:
                alive = True
                if w.conn in ready:
                    try:
                        tag, payload = w.conn.recv()
                    except (EOFError, OSError):
                        alive = False
                    else:
                        if tag == "load_failed":
                            raise payload
                        if tag == "ready":
                            w.ready = True
                        else:
                            w.unit = None
                            emit(payload)
                elif w.proc.sentinel in ready:
                    alive = False
                if alive:
                    survivors.append(w)
                    continue
                w.proc.join(timeout=10)
                code = w.proc.exitcode
                if w.unit is not None:
                    emit(failed_row(job, w.unit, f"WorkerDied: the worker process exited with code {code} while "
                                    "processing this unit (crash or out of memory)",
                                    seconds=time.perf_counter() - w.started, worker=w.name))
                elif not w.ready:
                    raise AnalysisError(f"a cohort worker process exited with code {code} while loading the models")
                w.conn.close()
                if queue:
                    survivors.append(_Worker(ctx, job, threads))
            pool = survivors
    finally:
        for w in pool:
            w.stop()
