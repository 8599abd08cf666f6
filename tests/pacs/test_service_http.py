"""Issue 14: `zeroclick listen --config` fed by dcmtk storescu, watched through /metrics, /healthz and the status
page (read while the analysis runs and after it; rendered by headless Chromium)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pydicom
import pytest
from zc_listener_helpers import PYTHONPATH, RecordingScp, dcmtk, free_port, wait_for  # noqa: I001

pytestmark = pytest.mark.pacs


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy


def _get(url: str) -> tuple[int, str]:
    """(HTTP status, body); (0, reason) when nothing answers."""
    try:
        with _DIRECT.open(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _storescu(files: list[Path], port: int, *, called: str = "ZEROCLICK") -> subprocess.CompletedProcess:
    return subprocess.run([dcmtk("storescu") or "storescu", "-aet", "MODALITY", "-aec", called, "127.0.0.1", str(port),
                           *map(str, files)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TCP_NODELAY="1"))


def screenshot(url: str, png: Path) -> None:
    """Headless Chromium's screenshot of ``url`` (1100x800)."""
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-proxy-server",
                    f"--screenshot={png}", "--window-size=1100,800", url], capture_output=True, timeout=120,
                   check=True)


@pytest.mark.skipif(dcmtk("storescu") is None, reason="dcmtk storescu is not installed (apt-get install dcmtk)")
def test_issue_14_listener_from_config_file_storescu_metrics_and_status_page(tmp_path, pacs_exam):
    dest = RecordingScp()
    port, http_port = free_port(), free_port()
    cfg = tmp_path / "listen.toml"
    cfg.write_text(f'[listener]\nae_title = "ZEROCLICK"\nport = {port}\nspool = "spool"\nstable_seconds = 1\n'
                   f'completeness = "geometry"\nmin_free_gb = 0\nanalysis = "zc_threshold_analysis:analyse_slow"\n'
                   f'[[peers]]\nae_title = "MODALITY"\nsend = "{dest.address}"\n'
                   f'[http]\nport = {http_port}\n')
    log = tmp_path / "listener.log"
    env = dict(os.environ, PYTHONPATH=PYTHONPATH, ZC_TEST_ANALYSIS_DELAY_S="6")
    proc = subprocess.Popen([sys.executable, "-m", "zeroclick.pipelines.pacs.listener", "--config", str(cfg),
                             "--log-json"], env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    base = f"http://127.0.0.1:{http_port}"
    files = [Path(p) for p in [*pacs_exam.cine.paths, *pacs_exam.lge.paths]]
    try:
        wait_for(lambda: _get(base + "/healthz")[0] == 200 if proc.poll() is None else True, 60,
                 "the status page", log.read_text)
        assert proc.poll() is None, log.read_text()
        assert _get(base + "/healthz") == (200, "ok\n")
        wrong = _storescu(files[:1], port, called="WRONGAE")
        assert "Association Rejected" in wrong.stderr and "Called AE Title Not Recognized" in wrong.stderr
        sent = _storescu(files, port)
        assert sent.returncode == 0, sent.stderr

        # while the analysis runs
        wait_for(lambda: 'zeroclick_jobs{state="running"} 1' in _get(base + "/metrics")[1], 90,
                 "the job to run", log.read_text)
        code, during = _get(base + "/metrics")
        assert code == 200
        assert _metric(during, 'zeroclick_instances_received_total{outcome="stored"}') == len(files)
        assert _metric(during, 'zeroclick_associations_total{result="accepted"}') == 1
        assert _metric(during, 'zeroclick_associations_total{result="rejected"}') == 1
        assert _metric(during, "zeroclick_analysis_seconds_count") == 0
        page_during = _get(base + "/")[1]
        assert ">running<" in page_during and "called AE title is not ZEROCLICK" in page_during
        browser = shutil.which("chromium") is not None
        if browser:
            screenshot(base + "/", tmp_path / "during.png")

        # after it
        wait_for(lambda: 'zeroclick_jobs{state="sent"} 1' in _get(base + "/metrics")[1], 120,
                 "the results to be sent", log.read_text)
        after = _get(base + "/metrics")[1]
        assert _metric(after, "zeroclick_analysis_seconds_count") == 1
        assert 6.0 <= _metric(after, "zeroclick_analysis_seconds_sum") < 120  # the stand-in sleeps 6 s
        assert _metric(after, 'zeroclick_analysis_seconds_bucket{le="5"}') == 0
        assert _metric(after, 'zeroclick_sends_total{outcome="ok"}') == 1
        assert _metric(after, "zeroclick_send_failures_total") == 0
        on_disk = sum(p.stat().st_size for p in (tmp_path / "spool").rglob("*") if p.is_file())
        assert 0 < _metric(after, "zeroclick_spool_bytes") <= on_disk + (1 << 20)
        page = _get(base + "/")[1]
        assert ">sent<" in page and "Recent jobs" in page
        assert {str(ds.Modality) for ds in dest.received} >= {"SEG", "SR"}
        png = tmp_path / "after.png"
        if browser:
            screenshot(base + "/", png)
            _check_png(png)
            if os.environ.get("ZC_DOCS_SCREENSHOT"):  # copy it where asked (e.g. docs/listener_status.png)
                shutil.copy(png, os.environ["ZC_DOCS_SCREENSHOT"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        dest.close()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines and len(lines) == len([x for x in log.read_text().splitlines() if x.strip()])  # all JSON
    events = {e.get("event") for e in lines}
    assert {"association_accepted", "association_rejected", "study_receiving", "study_stable", "job_state",
            "send"} <= events
    stable = next(e for e in lines if e.get("event") == "study_stable")
    assert stable["instances"] == len(files)
    states = [e["state"] for e in lines if e.get("event") == "job_state"]
    assert states == ["queued", "running", "analysed", "sent"]
    text = log.read_text() + page
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    for identifier in ("Test^Patient", "ZC-TEST-1", "19600101", study_uid):
        assert identifier not in text
    if not browser:
        pytest.skip("everything checked except the rendered page: Debian `chromium` is not installed")


def _check_png(png: Path) -> None:
    """A real rendering: the right size, and not one flat colour."""
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (1100, 800)
        colours = im.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 20
