"""Cohorts: run a pipeline over many studies or slides, on one machine, on shards, or on a Ray cluster.

``run_cohort("cmr", ["/data/exams"], "/results", shard="0/4", resume=True, workers=2)`` discovers the
units, keeps those of the shard, processes each into ``/results/<id>/`` atomically, and records one
``manifest.jsonl`` row per unit. A failing unit becomes a ``failed`` row; it never stops the cohort.
The unit-function interface (:class:`UnitKind`) is what the runner drives; ``cmr`` and ``slide`` are built in.
"""

from zeroclick.pipelines.cohort.kinds import (
    Unit,
    UnitKind,
    discover_units,
    get_kind,
    kind_names,
    register_kind,
)
from zeroclick.pipelines.cohort.manifest import ManifestRow, merge_manifests, read_manifests
from zeroclick.pipelines.cohort.runner import BACKENDS, CohortRun, UnitJob, process_unit, run_cohort
from zeroclick.pipelines.cohort.shards import Shard, parse_shard, select_shard

__all__ = [
    "BACKENDS",
    "CohortRun",
    "ManifestRow",
    "Shard",
    "Unit",
    "UnitJob",
    "UnitKind",
    "discover_units",
    "get_kind",
    "kind_names",
    "merge_manifests",
    "parse_shard",
    "process_unit",
    "read_manifests",
    "register_kind",
    "run_cohort",
    "select_shard",
]
