"""``zeroclick bench dicom-scan``: whole-exam header scan vs a pydicom loop vs raw file reads.

On one generated exam (3,000 images by default; cached between runs) it measures, warm cache, the median of
``--repeats`` runs of:

* ``raw_read_files_per_s``: ``open(path, "rb").read()`` of every file (the ceiling);
* ``pydicom_files_per_s``: ``pydicom.dcmread(path, stop_before_pixels=True)`` in a plain loop;
* ``scan_files_per_s``: :func:`imaging.dicom.scan` on the folder (headers, validation, grouping,
  classification and geometry of every series; all cores);
* ``fast_reader_1proc_files_per_s``: the fast header reader alone in one process.
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
        from imaging.synthetic.cmr import generate_exam

        generate_exam(out, n_images=args.images, vendor=args.vendor, seed=0)
        done.write_text("ok\n")
    return out / "dicom" if (out / "dicom").is_dir() else out


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _rate(n: int, fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times), [round(n / t, 1) for t in times]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import pydicom

    from imaging.dicom import scan
    from imaging.dicom.headers import read_header_fast
    from imaging.dicom.scan import default_workers

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
    raw_rate, raw_runs = _rate(n, raw, args.repeats)
    pyd_rate, pyd_runs = _rate(n, loop_pydicom, args.repeats)
    fast_rate, fast_runs = _rate(n, fast_1proc, args.repeats)
    scan_rate, scan_runs = _rate(n, do_scan, args.repeats)
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
        "runs_files_per_s": {"scan": scan_runs, "pydicom": pyd_runs, "raw_read": raw_runs, "fast_1proc": fast_runs},
        "series": len(exam.series),
        "rejected": len(exam.rejected),
        "classes": sorted({s.label for s in exam.series}),
    }
