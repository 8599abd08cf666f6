"""The analysis a received study goes through, as a function and as ``python -m zeroclick.pipelines.pacs.analysis``.

Default: the zero-click cardiac pipeline (:func:`zeroclick.pipelines.cardiac.run`) followed by
:func:`zeroclick.pipelines.cardiac.report.write_dicom_outputs` (SEG ED/ES/LGE, SR, PDF). Another analysis can be
named as ``module:function`` (argument ``--analysis`` or environment variable ``ZEROCLICK_PACS_ANALYSIS``);
it is called as ``function(in_dir, out_dir)`` and returns the DICOM files it wrote.

The command prints one JSON object ``{"outputs": [...], "seconds": s}`` and exits 0, or 3 with
``{"error": reason}`` when the analysis failed in a way a retry may cure (a missing file, memory, the
environment), or :data:`EXIT_PERMANENT` (4) with ``{"error": reason, "permanent": true}`` when the input itself
cannot be analysed (:class:`~zeroclick.imaging.errors.InvalidInputError`, a failed cardiac result): the listener
does not retry those. It runs in its own process, so a crash or a memory leak
in the analysis never takes the PACS or the listener down.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from zeroclick.imaging.errors import AnalysisError, InvalidInputError, ZeroClickError

__all__ = ["ANALYSIS_ENV", "EXIT_PERMANENT", "cardiac_analysis", "resolve_analysis", "run_analysis"]

logger = logging.getLogger(__name__)

ANALYSIS_ENV = "ZEROCLICK_PACS_ANALYSIS"
EXIT_PERMANENT = 4  # the same input would fail again: not retried
AnalysisFn = Callable[[Path, Path], Sequence[Path]]


def cardiac_analysis(in_dir: Path, out_dir: Path) -> list[Path]:
    """Run the cardiac pipeline on a study folder and write its DICOM outputs into ``out_dir``."""
    from zeroclick.pipelines.cardiac import run  # type: ignore[attr-defined]
    from zeroclick.pipelines.cardiac.report import write_dicom_outputs

    result = run(str(in_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / "report.json"  # kept with the job (not sent): measurements, QC, provenance
    tmp = report.with_name("report.json.tmp")
    tmp.write_text(result.to_json())
    os.replace(tmp, report)
    if result.status == "failed":
        raise InvalidInputError(f"cardiac analysis failed: {result.failure_reason}")
    return write_dicom_outputs(result, out_dir, source=in_dir)


def resolve_analysis(spec: str | None = None) -> AnalysisFn:
    """``module:function`` (or ``$ZEROCLICK_PACS_ANALYSIS``) -> the function; default :func:`cardiac_analysis`."""
    spec = spec or os.environ.get(ANALYSIS_ENV) or ""
    if not spec:
        return cardiac_analysis
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InvalidInputError(f"analysis {spec!r} must be written module:function")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(f"analysis {spec!r} cannot be imported: {exc}") from exc


def run_analysis(in_dir: str | Path, out_dir: str | Path, *, analysis: str | None = None) -> list[Path]:
    """Resolve and run the analysis; returns the output files (all inside ``out_dir``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fn = resolve_analysis(analysis)
    outputs = [Path(p) for p in fn(Path(in_dir), out)]
    root = out.resolve()
    outside = [p for p in outputs if root not in p.resolve().parents]
    if outside:
        raise AnalysisError(f"the analysis wrote {len(outside)} output(s) outside {out}: none is sent; fix the analysis")
    return outputs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zeroclick.pipelines.pacs.analysis", description=__doc__.splitlines()[0])
    parser.add_argument("in_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--analysis", default=None, help="module:function (default: the cardiac pipeline)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    try:
        outputs = run_analysis(args.in_dir, args.out_dir, analysis=args.analysis)
    except InvalidInputError as exc:  # the input cannot be analysed: a retry would fail the same way
        sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}", "permanent": True}) + "\n")
        return EXIT_PERMANENT
    except (ZeroClickError, ImportError, ValueError, RuntimeError, OSError) as exc:
        sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        return 3
    sys.stdout.write(json.dumps({"outputs": [str(p) for p in outputs], "seconds": time.perf_counter() - t0}) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
