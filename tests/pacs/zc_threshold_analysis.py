"""A stand-in analysis for PACS tests: labels read back from the mini exam's pixel values (exact), then the
real writers (:func:`zeroclick.pipelines.cardiac.report.write_dicom_outputs`). Called as ``module:function``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dicom_write"))

from zc_mini_exam import build_result, load_mini_exam  # noqa: E402

from zeroclick.pipelines.cardiac.report import write_dicom_outputs  # noqa: E402


def analyse(in_dir: Path, out_dir: Path) -> list[Path]:
    exam = load_mini_exam(in_dir)
    return write_dicom_outputs(build_result(exam), out_dir, source=in_dir)


def analyse_slow(in_dir: Path, out_dir: Path) -> list[Path]:
    """Same, after a pause (``ZC_TEST_ANALYSIS_DELAY_S``) and with a marker file, to kill the listener mid-analysis."""
    import os
    import time

    marker = os.environ.get("ZC_TEST_ANALYSIS_MARKER")
    if marker:
        with open(marker, "a") as fh:
            fh.write(f"{os.getpid()}\n")
    time.sleep(float(os.environ.get("ZC_TEST_ANALYSIS_DELAY_S", "3")))
    return analyse(in_dir, out_dir)
