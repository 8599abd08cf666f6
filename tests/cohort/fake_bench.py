"""A benchmark module for the regression-check tests: reports what its arguments tell it to."""

from __future__ import annotations

import argparse

DESCRIPTION = "fake benchmark for tests"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--speedup", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--no-weights", action="store_true")


def run(args: argparse.Namespace) -> dict:
    if args.no_weights:
        from zeroclick.imaging.errors import WeightsError

        raise WeightsError("weights not fetched: run `zeroclick weights fetch`")
    return {"speedup_vs_slow": args.speedup, "stages": {"total_s": args.seconds}, "tiles_per_s": 10.0 / args.seconds,
            "runtime_used": {"cine": "fake-runtime"}}
