"""A real Orthanc with the zeroclick plugin: push an exam, the results appear in the same study."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "pipelines" / "pacs" / "orthanc_plugin.py"

pytestmark = [pytest.mark.pacs, pytest.mark.slow]


@pytest.fixture(scope="module")
def orthanc_run(pacs_exam, netns, tmp_path_factory):
    from zc_listener_helpers import dcmtk

    for exe, found in (("Orthanc", shutil.which("Orthanc")), ("storescu", dcmtk("storescu"))):
        if found is None:
            pytest.skip(f"{exe} is not installed (Debian packages orthanc, orthanc-python, dcmtk)")
    if not Path("/usr/share/orthanc/plugins/libOrthancPython.so").exists():
        pytest.skip("orthanc-python is not installed (no libOrthancPython.so)")
    work = tmp_path_factory.mktemp("orthanc")
    pythonpath = f"{REPO}:{REPO / 'tests' / 'pacs'}:{REPO / 'tests' / 'dicom_write'}"
    cmd = [*netns, sys.executable, str(REPO / "tests" / "pacs" / "orthanc_session.py"), "--work", str(work),
           "--push", str(pacs_exam.root), "--plugin", str(PLUGIN), "--python", sys.executable,
           "--pythonpath", pythonpath, "--analysis", "zc_threshold_analysis:analyse", "--timeout", "40"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    summary_path = work / "summary.json"
    assert summary_path.exists(), f"driver failed: {proc.stderr[-2000:]}"
    return json.loads(summary_path.read_text()), work


def test_unknown_calling_aet_is_refused(orthanc_run):
    summary, _ = orthanc_run
    assert summary["unknown_aet_rc"] != 0
    assert summary["studies_after_unknown_aet"] == 0


def test_results_appear_in_the_same_study(orthanc_run, pacs_exam):
    summary, work = orthanc_run
    assert summary["push_rc"] == 0, summary["push_stderr"]
    assert summary["n_result_series"] == 5, (work / "orthanc.log").read_text()[-3000:]
    assert summary["n_studies_after"] == 1
    study_uid = pacs_exam.cine.datasets[0].StudyInstanceUID
    kinds = sorted(pydicom.dcmread(p, stop_before_pixels=True).Modality for p in (work / "results").glob("*.dcm"))
    assert kinds == ["DOC", "SEG", "SEG", "SEG", "SR"]
    for p in (work / "results").glob("*.dcm"):
        assert pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID == study_uid


def test_plugin_analyses_once_and_reports_timing(orthanc_run):
    summary, _ = orthanc_run
    runs = summary["plugin_timings"]
    assert [r["status"] for r in runs] == ["ok"], runs
    assert runs[0]["n_outputs"] == 5
    assert summary["plugin_runs_after_wait"] == 1
    # measured: last image received -> results stored (StableAge 1 s + analysis + upload)
    assert 0 < summary["results_after_last_image_s"] < 40
    print(f"\nOrthanc: push {summary['push_s']:.2f} s, last image -> results stored "
          f"{summary['results_after_last_image_s']:.2f} s (analysis {runs[0]['analysis_s']:.2f} s)")
