"""``zeroclick bench [NAME] [--json]``: list or run a benchmark; each prints one JSON object."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from zeroclick.benchmarks import REGISTRY

#: Exit code of ``zeroclick bench regression`` when a checked ratio is more than the tolerance worse than its
#: baseline (or a benchmark of the check failed); distinct from 3 (analysis failed) and 5 (environment).
EXIT_REGRESSED = 6


def _load(name: str):
    module_name = REGISTRY[name]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="list or run benchmarks (one JSON object per run)",
                       description="List or run benchmarks; each prints one JSON object (machine, git commit, UTC "
                                   "time and load average included).",
                       epilog=f"exit codes: 0 ok; {EXIT_REGRESSED} `bench regression` found a regression (a ratio "
                              "more than the tolerance worse than benchmarks/baselines.json, or a benchmark failed); "
                              "others as `zeroclick --help`")
    bsub = p.add_subparsers(dest="bench_name", metavar="NAME")
    for name in REGISTRY:
        module = _load(name)
        if module is None:
            continue
        # argparse %-formats help strings: a literal "30%" in a description must be escaped
        bp = bsub.add_parser(name, help=getattr(module, "DESCRIPTION", "").replace("%", "%%"))
        bp.add_argument("--json", action="store_true", help="print only the JSON object (default prints it too)")
        bp.add_argument("--out", help="also write the JSON object to this file")
        module.add_arguments(bp)
        bp.set_defaults(func=_run, bench_module=module)
    p.set_defaults(func=_list)


def _list(args: argparse.Namespace) -> int:
    for name in REGISTRY:
        module = _load(name)
        status = getattr(module, "DESCRIPTION", "") if module else "(not available in this version)"
        print(f"{name:12s} {status}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from zeroclick.benchmarks.common import machine_info, run_context
    from zeroclick.benchmarks.regression import BenchmarkRegressionError

    record = {"benchmark": args.bench_name, "machine": machine_info(), "context": run_context()}
    try:
        record.update(args.bench_module.run(args))
    except BenchmarkRegressionError as exc:  # the table and the JSON are already printed
        print(f"zeroclick: {exc}", file=sys.stderr)
        return EXIT_REGRESSED
    text = json.dumps(record, indent=None if args.json else 2, sort_keys=False, default=str)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    sys.stdout.write(text + "\n")
    return 0
