"""A benchmark module for the regression-check tests: reports what its arguments tell it to."""

from __future__ import annotations

import argparse

DESCRIPTION = "fake benchmark for tests"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--speedup", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=2.0)


def run(args: argparse.Namespace) -> dict:
    return {"speedup_vs_slow": args.speedup, "stages": {"total_s": args.seconds}, "tiles_per_s": 10.0 / args.seconds}
