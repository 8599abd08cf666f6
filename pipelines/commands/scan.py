"""``zeroclick scan SOURCE [--json]``: what is in an exam folder/archive, series by series, and why."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scan",
        help="list the series of a DICOM exam (folder, .zip, .tar.gz) with their class, reasons and problems",
        description="Reads headers only (all cores), classifies every series and reports bad files. "
                    "Exit code 3 when no image series is found.",
    )
    p.add_argument("source", metavar="SOURCE", nargs="+", help="folder (recursive), files, .zip or .tar(.gz)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--strictness", choices=("ignore", "warn", "raise"), default="warn",
                   help="what to do with bad input: record it (ignore), also log it (warn, default), stop (raise)")
    p.add_argument("--workers", type=int, default=None, help="processes for header reading (default: all cores)")
    p.set_defaults(func=_run)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _run(args: argparse.Namespace) -> int:
    import warnings

    from zeroclick.imaging.dicom import scan
    from zeroclick.imaging.errors import ZeroClickWarning

    source = args.source[0] if len(args.source) == 1 else args.source
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroClickWarning)  # problems are printed in the table
        exam = scan(source, strictness=args.strictness, workers=args.workers)
    seconds = time.perf_counter() - t0
    if args.json:
        record = exam.to_dict()
        record["scan_seconds"] = round(seconds, 3)
        sys.stdout.write(json.dumps(record, indent=2) + "\n")
    else:
        _table(exam, seconds)
    if not exam.series:
        print("zeroclick: no image series found in the source", file=sys.stderr)
        return 3
    return 0


def _table(exam, seconds: float) -> None:
    w = sys.stdout.write
    w(f"{exam.n_files} files, {len(exam.studies)} study(ies), {len(exam.series)} series, "
      f"{len(exam.rejected)} rejected, scanned in {seconds:.2f} s\n")
    header = f"{'#':>4}  {'description':<28} {'class':<16} {'images':>6}  {'layout':<12} reasons / problems\n"
    for study in exam.studies:
        if len(exam.studies) > 1:
            w(f"\nstudy {study.study_instance_uid}\n")
        w(header)
        for s in study.series:
            g = s.geometry
            layout = f"{g.n_phases}x{g.n_slices}" if g.regular else "-"
            number = "" if s.number is None else str(s.number)
            w(f"{number:>4}  {_short(s.description or '(none)', 28):<28} {s.label:<16} {s.n_images:>6}  "
              f"{layout:<12} {_short(s.classification.summary(), 100)}\n")
            for p in s.problems:
                w(f"{'':>4}  {'':<28} {'':<16} {'':>6}  {'':<12} ! {_short(p, 100)}\n")
            for note in s.meta.get("value_notes", ()):  # decimal commas read, non-numbers ignored
                w(f"{'':>4}  {'':<28} {'':<16} {'':>6}  {'':<12} ~ {_short(note, 100)}\n")
    if exam.rejected:
        counts = Counter(r.code for r in exam.rejected)
        w("rejected: " + ", ".join(f"{code} x{n}" for code, n in sorted(counts.items())) + "\n")
    for p in exam.problems:
        w(f"! {p}\n")
