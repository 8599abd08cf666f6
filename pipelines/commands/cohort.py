"""``zeroclick cohort cmr|slide INPUTS --out DIR``: run a pipeline over a cohort; ``cohort merge DIR``.

Exit codes: 0 every unit ok, 4 some units failed, 3 every unit failed, 2 usage, 5 models/pipeline missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zeroclick.pipelines.cohort import ManifestRow

EPILOG = """INPUTS are folders (each child is a unit: an exam folder or archive, a slide file), globs, or CSV
files with a 'path' column (optional 'id'). Every unit writes DIR/<id>/ and one row of DIR/manifest.jsonl
(DIR/manifest.shard-i-of-N.jsonl with --shard; `zeroclick cohort merge DIR` combines them).

exit codes: 0 all ok, 2 usage, 3 every unit failed, 4 some units failed, 5 pipeline or weights missing
"""


def register(sub: argparse._SubParsersAction) -> None:
    from zeroclick.pipelines.cohort import BACKENDS, kind_names

    p = sub.add_parser("cohort", help="run a pipeline over many exams or slides (shards, resume, Ray)",
                       description="Run a pipeline over a cohort with a manifest, shards, resume and optional Ray.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = p.add_subparsers(dest="cohort_kind", metavar="KIND", required=True)
    for name in kind_names():
        k = csub.add_parser(name, help=f"one unit = one {'exam' if name == 'cmr' else name}",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        k.add_argument("inputs", nargs="+", metavar="INPUTS", help="folders, globs or CSV files")
        k.add_argument("--out", required=True, metavar="DIR", help="output folder (shared by all shards)")
        k.add_argument("--shard", metavar="i/N", help="process only shard i of N (0-based), e.g. $SLURM_ARRAY_TASK_ID/10")
        k.add_argument("--resume", action="store_true",
                       help="skip units already done with the same weights and version")
        k.add_argument("--workers", type=int, default=1, metavar="K",
                       help="local processes, or Ray actors (0: one per CPU/GPU of the cluster); default 1")
        k.add_argument("--backend", choices=BACKENDS, default="local", help="local processes or a Ray cluster")
        k.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
        k.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join ('auto' inside a cluster)")
        k.add_argument("--gpus-per-worker", type=float, default=1.0, metavar="G",
                       help="GPUs each Ray actor requests when the cluster has GPUs (default 1)")
        k.add_argument("--json", action="store_true", help="print only the summary as one JSON object")
        k.set_defaults(func=_run, kind_name=name)
    m = csub.add_parser("merge", help="combine the shard manifests of DIR into DIR/manifest.jsonl")
    m.add_argument("out", metavar="DIR")
    m.add_argument("--json", action="store_true", help="print only the summary as one JSON object")
    m.set_defaults(func=_merge)


def _run(args: argparse.Namespace) -> int:
    from zeroclick.pipelines.cohort import run_cohort

    progress = None if (args.quiet or args.json) else _Progress(args.kind_name)
    try:
        result = run_cohort(
            args.kind_name, args.inputs, args.out, shard=args.shard, resume=args.resume, workers=args.workers,
            backend=args.backend, device=args.device, ray_address=args.ray_address,
            gpus_per_worker=args.gpus_per_worker,
            on_row=progress.advance if progress else None, on_start=progress.start if progress else None,
        )
    except ImportError as exc:  # the pipeline or an optional extra (ray) is not installed
        print(f"zeroclick: {exc}", file=sys.stderr)
        return 5
    finally:
        if progress:
            progress.stop()
    summary = result.to_dict()
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    elif not args.quiet:
        sys.stdout.write(
            f"{summary['units']} units in shard {summary['shard']}: {summary['ok']} ok, {summary['failed']} failed, "
            f"{summary['skipped']} skipped (resume) in {summary['seconds']:.1f} s\nmanifest: {summary['manifest']}\n"
        )
        for row in result.rows:
            if not row.ok:
                sys.stdout.write(f"  failed {row.id}: {row.error}\n")
    if result.n_failed == 0:
        return 0
    return 3 if result.n_ok == 0 else 4


def _merge(args: argparse.Namespace) -> int:
    from zeroclick.pipelines.cohort import merge_manifests

    rows = merge_manifests(Path(args.out))
    ok = sum(r.ok for r in rows)
    summary = {"manifest": str(Path(args.out) / "manifest.jsonl"), "units": len(rows), "ok": ok,
               "failed": len(rows) - ok}
    sys.stdout.write(json.dumps(summary) + "\n" if args.json else
                     f"{summary['units']} units: {ok} ok, {summary['failed']} failed -> {summary['manifest']}\n")
    return 0 if ok == len(rows) else 4


class _Progress:
    """A rich progress bar on stderr, advanced once per finished unit."""

    def __init__(self, kind: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn(f"cohort {kind}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(), transient=True,
                             console=Console(stderr=True))
        self._task: Any = None
        self._failed = 0

    def start(self, total: int) -> None:
        self._bar.start()
        self._task = self._bar.add_task("units", total=total, failed=0)

    def advance(self, row: ManifestRow) -> None:
        self._failed += not row.ok
        if self._task is not None:
            self._bar.update(self._task, advance=1, failed=self._failed)

    def stop(self) -> None:
        self._bar.stop()
