"""``zeroclick bench dicom-scan``: whole-exam header scan vs a pydicom loop vs raw file reads.

On one generated exam (3,000 images by default; cached between runs) it measures, warm cache, the median of
``--repeats`` runs of:

* ``raw_read_files_per_s``: ``open(path, "rb").read()`` of every file (the ceiling);
* ``pydicom_files_per_s``: ``pydicom.dcmread(path, stop_before_pixels=True)`` in a plain loop;
* ``scan_files_per_s``: :func:`zeroclick.imaging.dicom.scan` on the folder (headers, validation, grouping,
  classification and geometry of every series; all cores);
* ``fast_reader_1proc_files_per_s``: the fast header reader alone in one process.

The methods run interleaved (one of each per round) so that a shared machine's load hits them alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

DESCRIPTION = "DICOM header scan of a generated exam: files/s vs pydicom stop_before_pixels and raw reads"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=3000, help="images in the generated exam (default 3000)")
    parser.add_argument("--vendor", default="siemens", choices=("siemens", "ge", "philips"))
    parser.add_argument("--data", default=None,
                        help="scan this folder instead of a generated exam (e.g. a real exam)")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "zeroclick-bench"),
                        help="where generated exams are kept between runs")
    parser.add_argument("--repeats", type=int, default=5, help="runs per method; the median is reported")
    parser.add_argument("--workers", type=int, default=None, help="scan processes (default: all cores)")


def _exam_folder(args: argparse.Namespace) -> Path:
    if args.data:
        return Path(args.data)
    out = Path(args.cache) / f"cmr-{args.vendor}-{args.images}"
    done = out / ".complete"
    if not done.exists():
        from zeroclick.imaging.synthetic.cmr import generate_exam

        generate_exam(out, n_images=args.images, vendor=args.vendor, seed=0)
        done.write_text("ok\n")
    return out / "dicom" if (out / "dicom").is_dir() else out


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _interleaved(n: int, methods: dict[str, Any], repeats: int) -> dict[str, list[float]]:
    """files/s of every method, ``repeats`` rounds with each method once per round (A B C D A B C D ...),
    so that load changes on a shared machine hit all methods alike."""
    rates: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(max(1, repeats)):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            rates[name].append(n / (time.perf_counter() - t0))
    return rates


def run(args: argparse.Namespace) -> dict[str, Any]:
    import pydicom

    from zeroclick.imaging.dicom import scan
    from zeroclick.imaging.dicom.headers import read_header_fast
    from zeroclick.imaging.dicom.scan import default_workers

    folder = _exam_folder(args)
    files = _files(folder)
    n = len(files)
    size = sum(os.path.getsize(p) for p in files)

    def raw() -> None:
        for p in files:
            with open(p, "rb") as fh:
                fh.read()

    def loop_pydicom() -> None:
        for p in files:
            pydicom.dcmread(p, stop_before_pixels=True)

    def fast_1proc() -> None:
        for p in files:
            read_header_fast(p)

    exam_holder: list = []

    def do_scan() -> None:
        exam_holder[:] = [scan(folder, strictness="ignore", workers=args.workers)]

    raw()  # warm the page cache
    runs = _interleaved(n, {"raw_read": raw, "pydicom": loop_pydicom, "fast_1proc": fast_1proc, "scan": do_scan},
                        args.repeats)
    med = {name: statistics.median(r) for name, r in runs.items()}
    raw_rate, pyd_rate, fast_rate, scan_rate = med["raw_read"], med["pydicom"], med["fast_1proc"], med["scan"]
    exam = exam_holder[0]
    return {
        "files": n,
        "megabytes": round(size / 1e6, 1),
        "cache": "warm",
        "repeats": args.repeats,
        "workers": args.workers or default_workers(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "scan_files_per_s": round(scan_rate, 1),
        "pydicom_files_per_s": round(pyd_rate, 1),
        "raw_read_files_per_s": round(raw_rate, 1),
        "fast_reader_1proc_files_per_s": round(fast_rate, 1),
        "speedup_vs_pydicom": round(scan_rate / pyd_rate, 2),
        "scan_vs_raw_read": round(scan_rate / raw_rate, 3),
        "fast_reader_1proc_speedup_vs_pydicom": round(fast_rate / pyd_rate, 2),
        "runs_files_per_s": {name: [round(v, 1) for v in r] for name, r in runs.items()},
        "series": len(exam.series),
        "rejected": len(exam.rejected),
        "classes": sorted({s.label for s in exam.series}),
    }
