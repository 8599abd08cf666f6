"""Ray backend (the ``zeroclick[ray]`` extra): an actor pool across a cluster, imported only when asked.

Each actor loads the models once (``kind.load``), asks Ray for ``num_gpus`` when the cluster has GPUs, and
receives unit *paths*, never pixel arrays: it runs the same :func:`zeroclick.pipelines.cohort.runner.process_unit`
as one machine does, writing outputs into the shared output folder, and returns only the manifest row.
So every node must see the inputs and the output folder at the same paths (a shared file system).
An actor that dies fails only the unit it held; a fresh actor replaces it.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from zeroclick.imaging.errors import AnalysisError, WeightsError
from zeroclick.pipelines.cohort.kinds import Unit
from zeroclick.pipelines.cohort.manifest import ManifestRow
from zeroclick.pipelines.cohort.runner import UnitJob, failed_row, process_unit

logger = logging.getLogger(__name__)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "the ray backend needs Ray: pip install 'zeroclick[ray]' (or pip install 'ray[default]')"
        ) from exc
    return ray


class UnitActor:
    """Holds one loaded model context and processes units sent to it by path."""

    def __init__(self, job: UnitJob) -> None:
        self.job = job
        self.name = f"ray-{os.getpid()}"
        self.context = job.kind.load(job.device)

    def process(self, unit: Unit) -> ManifestRow:
        """Process one unit into the shared output folder; returns its manifest row."""
        return process_unit(self.job, self.context, unit, worker=self.name)

    def ping(self) -> str:
        """Returns the actor's name once its models are loaded."""
        return self.name


def run_units_ray(
    job: UnitJob,
    units: Sequence[Unit],
    emit: Callable[[ManifestRow], None],
    *,
    workers: int = 0,
    address: str | None = None,
    gpus_per_worker: float = 1.0,
) -> None:
    """Process ``units`` on a Ray actor pool and ``emit`` each row as it arrives.

    Parameters
    ----------
    workers
        Number of actors; ``0`` means as many as the cluster fits: one per CPU, or one per
        ``gpus_per_worker`` GPUs when it has GPUs. Never more than fit now, nor more than the units.
    address
        Cluster to join (``"auto"`` inside a cluster); ``None`` reuses an initialised Ray or starts a local one.
    gpus_per_worker
        ``num_gpus`` each actor requests when the cluster has GPUs (fractions share a GPU).
    """
    ray = _import_ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    resources = ray.cluster_resources()
    n_gpus = float(resources.get("GPU", 0))
    n_cpus = int(resources.get("CPU", 1))
    options: dict[str, Any] = {"num_cpus": 1, "max_restarts": 0}
    if n_gpus > 0:
        options["num_gpus"] = gpus_per_worker
        capacity = max(1, int(n_gpus / gpus_per_worker)) if gpus_per_worker > 0 else n_cpus
    else:
        capacity = n_cpus
    if workers > capacity:
        logger.warning("asked for %d Ray workers but the cluster fits %d; using %d", workers, capacity, capacity)
    n_actors = max(1, min(workers if workers > 0 else capacity, capacity, len(units)))
    logger.info("ray backend: %d actors (cluster: %d CPUs, %g GPUs)", n_actors, n_cpus, n_gpus)
    actor_class = ray.remote(UnitActor).options(**options)

    def start() -> Any:
        return actor_class.remote(job)

    actors = [start() for _ in range(n_actors)]
    try:
        # Surface a models/weights problem once, as an error, before any unit is attempted.
        ray.get([a.ping.remote() for a in actors])
    except ray.exceptions.RayActorError as exc:
        cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
        raise WeightsError(f"the {job.kind.name} models could not be loaded on a Ray worker: {cause}") from exc

    queue = deque(units)
    running: dict[Any, tuple[Any, Unit, float]] = {}  # object ref -> (actor, unit, start time)
    idle = list(actors)
    try:
        while queue or running:
            while idle and queue:
                actor, unit = idle.pop(), queue.popleft()
                running[actor.process.remote(unit)] = (actor, unit, time.perf_counter())
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                actor, unit, started = running.pop(ref)
                try:
                    row = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                    emit(failed_row(job, unit, f"WorkerDied: the Ray actor died while processing this unit ({exc})",
                                    seconds=time.perf_counter() - started, worker="ray"))
                    ray.kill(actor, no_restart=True)
                    if queue:
                        idle.append(start())
                    continue
                except ray.exceptions.RayTaskError as exc:  # process_unit never raises; this is a bug
                    raise AnalysisError(f"the Ray worker raised unexpectedly: {exc}") from exc
                emit(row)
                idle.append(actor)
    finally:
        for actor in idle + [a for a, _, _ in running.values()]:
            ray.kill(actor, no_restart=True)
