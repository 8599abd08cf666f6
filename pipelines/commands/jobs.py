"""``zeroclick jobs``: inspect, re-queue and clean the jobs of a ``zeroclick listen`` spool."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Inspect and manage the analysis jobs of a `zeroclick listen` spool (the listener may be running).

  list                 jobs, newest first (--state STATE, --limit N)
  show ID              one job: state, attempts, timings, error, outputs, report.json, QC status
  retry ID             re-queue a failed job (analysed again) or a send_failed one (sent again)
  purge                remove finished studies (files, kept versions, job folders) older than --older-than-days
                       or while the spool is larger than --max-gb; --dry-run says what would go

The spool comes from --spool or from the [listener] spool of --config. Studies appear by a hash of their UID.
Exit codes: 0 ok, 2 bad arguments, unknown job, or a job in a state that cannot be retried.
"""


def _add_spool(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spool", type=Path, metavar="DIR", help="the listener's spool folder")
    p.add_argument("--config", type=Path, metavar="FILE", help="the listener's TOML configuration (for its spool)")
    p.add_argument("--json", action="store_true", help="JSON output")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="jobs, newest first")
    _add_spool(ls)
    ls.add_argument("--state", help="only jobs in this state (queued, running, failed, send_failed, sent, ...)")
    ls.add_argument("--limit", type=int, default=50, help="at most N jobs (default 50; 0 = all)")
    for name, text in (("show", "one job in full"), ("retry", "re-queue a failed or send_failed job")):
        one = sub.add_parser(name, help=text)
        _add_spool(one)
        one.add_argument("job", type=int, metavar="ID")
    pg = sub.add_parser("purge", help="remove finished studies by age or spool size")
    _add_spool(pg)
    pg.add_argument("--older-than-days", type=float, help="finished studies whose last image is older than this")
    pg.add_argument("--max-gb", type=float, help="then the oldest finished studies while the spool is larger")
    pg.add_argument("--dry-run", action="store_true", help="only say what would be removed")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="inspect, retry and purge the jobs of a `zeroclick listen` spool",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run_from_args)


def _spool_dir(args: argparse.Namespace) -> Path:
    from zeroclick.pipelines.pacs.config import ConfigError, load_config

    if args.spool:
        return Path(args.spool)
    if args.config:
        spool = load_config(args.config).get("spool")
        if spool:
            return Path(spool)
    raise ConfigError("no spool: give --spool DIR, or --config FILE whose [listener] names spool")


def _table(jobs: list[dict[str, Any]]) -> str:
    head = f"{'job':>5}  {'study':16}  {'state':12} {'tries':>5}  {'analysis s':>10}  {'QC':34}  error"
    rows = [head]
    for j in jobs:
        secs = "" if j["analysis_s"] is None else f"{j['analysis_s']:.1f}"
        rows.append(f"{j['id']:>5}  {j['study']:16}  {j['state']:12} {j['attempts']:>5}  {secs:>10}  "
                    f"{(j['qc'] or '')[:34]:34}  {(j['error'] or '')[:80]}")
    return "\n".join(rows)


def run_from_args(args: argparse.Namespace) -> int:
    """Run the command; a bad configuration, argument or job id exits 2 with a message saying what to do."""
    from zeroclick.pipelines.pacs.config import exit_2_on_bad_input

    return exit_2_on_bad_input("zeroclick jobs", _run, args)


def _run(args: argparse.Namespace) -> int:
    from zeroclick.pipelines.pacs.jobs import list_jobs, purge, retry_job, show_job
    from zeroclick.pipelines.pacs.spool import Spool

    folder = _spool_dir(args)
    if not (folder / "queue.sqlite").is_file():
        from zeroclick.pipelines.pacs.config import ConfigError

        raise ConfigError(f"{folder} holds no queue.sqlite: is it the spool of `zeroclick listen`?")
    spool = Spool(folder)
    try:
        if args.action == "list":
            out: Any = list_jobs(spool, limit=args.limit or None, state=args.state)
            text = _table(out) if out else "no jobs"
        elif args.action == "show":
            out = show_job(spool, args.job)
            text = json.dumps(out, indent=2)
        elif args.action == "retry":
            out = retry_job(spool, args.job)
            text = f"job {out['id']} is {out['state']} again (study {out['study']})"
        else:
            if args.older_than_days is None and args.max_gb is None:
                from zeroclick.pipelines.pacs.config import ConfigError

                raise ConfigError("purge needs --older-than-days N and/or --max-gb N")
            report = purge(spool, max_age_s=None if args.older_than_days is None else args.older_than_days * 86400,
                           max_bytes=None if args.max_gb is None else int(args.max_gb * 1e9), dry_run=args.dry_run)
            out = report.to_dict()
            verb = "would remove" if args.dry_run else "removed"
            text = (f"{verb} {report.studies} studies ({report.jobs} jobs, {report.bytes_freed / 1e6:.1f} MB) of "
                    f"{report.spool_bytes_before / 1e6:.1f} MB")
    finally:
        spool.close()
    sys.stdout.write((json.dumps(out, indent=2, default=str) if args.json else text) + "\n")
    return 0
