"""The ``zeroclick`` command line: one entry point, subcommands in ``zeroclick.pipelines.commands``.

Exit codes: 0 ok, 2 usage error, 3 analysis failed (reason on stderr and in report.json),
4 partial result (some outputs or units failed), 5 environment problem (missing weights, codec, device).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from zeroclick.imaging import __version__
from zeroclick.imaging.errors import (
    AnalysisError,
    DeviceError,
    InvalidInputError,
    MissingCodecError,
    SlideUnreadableError,
    WeightsError,
    ZeroClickError,
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_PARTIAL = 4
EXIT_ENVIRONMENT = 5

# Subcommand modules under zeroclick.pipelines.commands, in --help order. A module that does not exist yet is skipped.
COMMANDS = ("synth", "scan", "cmr", "slide", "validate", "listen", "jobs", "cohort", "weights", "bench")

EPILOG = """exit codes:
  0  ok
  2  usage error
  3  analysis failed (reason on stderr and in report.json)
  4  partial result (some outputs or cohort units failed)
  5  environment problem (weights missing or unverified, codec missing, device unavailable)
  6  benchmark regressed (`zeroclick bench regression`: a ratio worse than its baseline by more than the tolerance)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zeroclick",
        description="Zero-click cardiac MRI and whole-slide histology quantification.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"zeroclick {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors; no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"zeroclick.pipelines.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"zeroclick.pipelines.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


def configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in ("zeroclick",):
        log = logging.getLogger(name)
        log.setLevel(level)
        for old in [h for h in log.handlers if getattr(h, "_zeroclick_cli", False)]:
            log.removeHandler(old)
        handler._zeroclick_cli = True  # type: ignore[attr-defined]
        log.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    configure_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except (WeightsError, MissingCodecError, DeviceError) as exc:
        print(f"zeroclick: {exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except (InvalidInputError, SlideUnreadableError, AnalysisError, ZeroClickError) as exc:
        print(f"zeroclick: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
