"""Issue 14: the listener as a service: job model, retries by command, AE checks, configuration, retention."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from zc_listener_helpers import PYTHONPATH, RecordingScp, free_port, push, wait_for  # noqa: I001

from zeroclick.pipelines.pacs.jobs import purge
from zeroclick.pipelines.pacs.listener import Listener, ListenerConfig
from zeroclick.pipelines.pacs.spool import Spool, inspect_instance, study_key

pytestmark = pytest.mark.pacs

CLI = [sys.executable, "-m", "zeroclick.pipelines.cli"]
ENV = dict(os.environ, PYTHONPATH=PYTHONPATH)


def exam_files(exam) -> list[Path]:
    return [Path(p) for p in [*exam.cine.paths, *exam.lge.paths]]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def job_rows(spool_dir: Path) -> list[dict]:
    out = cli("jobs", "list", "--spool", str(spool_dir), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _listener(tmp_path: Path, dest: str | None, analysis: str, env: dict[str, str], **extra) -> Listener:
    cfg = ListenerConfig(spool_dir=tmp_path / "spool", port=free_port(), allowed_aets=("MODALITY",),
                         destination=dest, stable_s=0.8, analysis=analysis, min_free_bytes=0, poll_s=0.1,
                         completeness="geometry", extra_env={"PYTHONPATH": PYTHONPATH, **env}, **extra)
    lst = Listener(cfg)
    lst.start()
    return lst


def _associate(port: int, *, calling: str, called: str) -> tuple | bool:
    """True when established, else the (result, source, diagnostic) of the A-ASSOCIATE-RJ the peer received."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.network_timeout = 30
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if assoc.is_established:
        assoc.release()
        return True
    p = assoc.acceptor.primitive
    return (p.result, p.result_source, p.diagnostic) if assoc.is_rejected and p is not None else False


def test_issue_14_wrong_called_ae_and_unknown_calling_ae_are_rejected_and_logged(tmp_path, caplog):
    lst = _listener(tmp_path, None, "zc_threshold_analysis:analyse", {})
    try:
        with caplog.at_level(logging.INFO, logger="zeroclick"):
            assert _associate(lst.port, calling="MODALITY", called="ZEROCLICK") is True
            # a real A-ASSOCIATE-RJ (not an abort), permanent, by the service user, with the PS3.8 reason
            assert _associate(lst.port, calling="MODALITY", called="WRONGAE") == (1, 1, 7)  # called AE unknown
            assert _associate(lst.port, calling="STRANGER", called="ZEROCLICK") == (1, 1, 3)  # calling AE unknown
            wait_for(lambda: len([r for r in caplog.records if getattr(r, "zc", {}).get("event")
                                  == "association_rejected"]) == 2, 10, "two rejection log lines")
        events = [r.zc for r in caplog.records if hasattr(r, "zc")]
        rejected = [e for e in events if e["event"] == "association_rejected"]
        assert {(e["calling_aet"], e["called_aet"]) for e in rejected} == {("MODALITY", "WRONGAE"),
                                                                          ("STRANGER", "ZEROCLICK")}
        assert all(e["peer"] == "127.0.0.1" and e["reason"] for e in rejected)
        assert "called AE title is not ZEROCLICK" in {e["reason"] for e in rejected}
        accepted = [e for e in events if e["event"] == "association_accepted"]
        assert [(e["calling_aet"], e["called_aet"]) for e in accepted] == [("MODALITY", "ZEROCLICK")]
        assert 'zeroclick_associations_total{result="rejected"} 2' in lst.metrics_text()
    finally:
        lst.stop()


def test_issue_14_input_error_is_not_retried_and_a_retry_by_command_succeeds(tmp_path, pacs_exam):
    fixed, calls = tmp_path / "fixed", tmp_path / "calls.txt"
    dest = RecordingScp()
    lst = _listener(tmp_path, dest.address, "zc_service_analysis:fails_until_fixed",
                    {"ZC_TEST_FIXED": str(fixed), "ZC_TEST_CALLS": str(calls)})
    spool_dir = tmp_path / "spool"
    try:
        files = exam_files(pacs_exam)
        assert push(files, lst.port) == [0] * len(files)
        wait_for(lambda: any(j["state"] == "failed" for j in job_rows(spool_dir)), 90, "the job to fail")
        time.sleep(1.5)  # many scheduler steps: a permanent input error must not be tried again
        (job,) = job_rows(spool_dir)
        assert calls.read_text().split() == ["permanent"]
        assert job["state"] == "failed" and job["attempts"] == 1 and "no short-axis cine" in job["error"]
        status = json.loads(subprocess.run([sys.executable, "-m", "zeroclick.pipelines.pacs.listener", "--spool",
                                            str(spool_dir), "--status"], capture_output=True, text=True, env=ENV,
                                           timeout=60).stdout)
        assert status["studies"][job["study"]]["state"] == "failed"  # the study agrees with its job
        assert dest.received == []

        sent_one = cli("jobs", "retry", str(job["id"]), "--spool", str(spool_dir))
        assert sent_one.returncode == 0 and "queued" in sent_one.stdout, sent_one.stderr  # still failing input
        wait_for(lambda: job_rows(spool_dir)[0]["state"] == "failed" and len(calls.read_text().split()) == 2, 90,
                 "the retried job to fail again")
        fixed.touch()
        again = cli("jobs", "retry", str(job["id"]), "--spool", str(spool_dir))
        assert again.returncode == 0, again.stderr
        wait_for(lambda: job_rows(spool_dir)[0]["state"] == "sent", 120, "the retried job to be sent")
        modalities = sorted(str(ds.Modality) for ds in dest.received)
        assert modalities.count("SEG") >= 2 and "SR" in modalities
        status = lst.spool.status()
        assert status["studies"][job["study"]]["state"] == "done"
        refused = cli("jobs", "retry", str(job["id"]), "--spool", str(spool_dir))
        assert refused.returncode == 2 and "only failed or send_failed" in refused.stderr
        missing = cli("jobs", "show", "999", "--spool", str(spool_dir))
        assert missing.returncode == 2 and "no job 999" in missing.stderr and "Traceback" not in missing.stderr
    finally:
        lst.stop()
        dest.close()


def test_transient_failures_are_retried_up_to_max_attempts_then_failed(tmp_path, pacs_exam):
    calls = tmp_path / "calls.txt"
    lst = _listener(tmp_path, None, "zc_service_analysis:transient", {"ZC_TEST_CALLS": str(calls)}, max_attempts=2)
    try:
        files = exam_files(pacs_exam)
        assert push(files, lst.port) == [0] * len(files)
        wait_for(lambda: any(j["state"] == "failed" for j in job_rows(tmp_path / "spool")), 90, "the job to fail")
        time.sleep(1.0)
        assert calls.read_text().split() == ["transient", "transient"]
        (job,) = job_rows(tmp_path / "spool")
        assert "failed 2 times" in job["error"] and "scratch disk unavailable" in job["error"]
        assert lst.spool.status()["studies"][job["study"]]["state"] == "failed"
    finally:
        lst.stop()


def _scp_on(port: int):
    """A Storage SCP on ``port`` recording what it receives (the PACS coming back up)."""
    from pydicom.uid import AllTransferSyntaxes
    from pynetdicom import AllStoragePresentationContexts, evt

    received: list = []
    ae = AE(ae_title="DEST")
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, AllTransferSyntaxes)
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, lambda e: received.append(e.dataset) or 0x0000)])
    return server, received


def test_send_failed_job_is_sent_again_by_command(tmp_path, pacs_exam):
    port = free_port()  # nobody listens there until the "PACS" comes back
    lst = _listener(tmp_path, f"DEST@127.0.0.1:{port}", "zc_threshold_analysis:analyse", {}, send_retries=0)
    try:
        files = exam_files(pacs_exam)
        assert push(files, lst.port) == [0] * len(files)
        wait_for(lambda: any(j["state"] == "send_failed" for j in job_rows(tmp_path / "spool")), 90,
                 "the send to fail")
        (job,) = job_rows(tmp_path / "spool")
        assert lst.spool.status()["studies"][job["study"]]["state"] == "send_failed"
        assert "zeroclick_send_failures_total 1" in lst.metrics_text()
        server, received = _scp_on(port)
        try:
            out = cli("jobs", "retry", str(job["id"]), "--spool", str(tmp_path / "spool"))
            assert out.returncode == 0, out.stderr
            wait_for(lambda: job_rows(tmp_path / "spool")[0]["state"] == "sent", 60, "the job to be sent")
            assert sorted(str(ds.SOPInstanceUID) for ds in received) == sorted(
                str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in job["outputs"])
            assert lst.spool.status()["studies"][job["study"]]["state"] == "done"
        finally:
            server.shutdown()
    finally:
        lst.stop()


def test_config_file_is_validated_and_flags_override_it(tmp_path):
    cfg = tmp_path / "listen.toml"
    cfg.write_text('[listener]\nae_title = "ZC1"\nport = 11200\nspool = "spool"\nsend = "PACS@10.1.2.3:104"\n'
                   'stable_seconds = 5\nallocator = "system"\n'
                   '[[peers]]\nae_title = "MRI1"\n[[peers]]\nae_title = "MRI2"\nsend = "PACS2@10.1.2.4:11112"\n'
                   '[retention]\nmax_age_days = 30\n[http]\nport = 0\n')
    out = cli("listen", "--config", str(cfg), "--port", "11300", "--check-config")
    assert out.returncode == 0, out.stderr
    eff = json.loads(out.stdout)
    assert eff["port"] == 11300 and eff["aet"] == "ZC1" and eff["stable_seconds"] == 5.0
    assert eff["spool"] == str(tmp_path / "spool")  # relative to the file
    assert eff["allow"] == ["MRI1", "MRI2"] and eff["peer_destinations"] == {"MRI2": "PACS2@10.1.2.4:11112"}
    assert eff["retention_days"] == 30.0 and eff["http_port"] == 0 and eff["worker_allocator"] == "system"
    assert eff["idle_seconds"] == 60.0  # a default
    bad = {
        '[listener]\nport = 70000\nspool = "s"\n': "[listener] port = 70000: a port is 1-65535",
        '[listener]\nstable_second = 5\n': "did you mean 'stable_seconds'",
        '[listenr]\nport = 1\n': "did you mean 'listener'",
        '[listener]\nspool = "s"\nsend = "PACS-no-port"\n': "must look like AET@HOST:PORT",
        '[listener]\nspool = "s"\nworkers = "two"\n': "[listener] workers = 'two': write a whole number",
        '[listener]\nspool = "s"\n[[peers]]\nae_title = "A-TITLE-LONGER-THAN-16"\n': "1-16 printable characters",
        '[listener]\nport = \n': "not valid TOML",
        '[listener]\nport = 104\n': "no spool folder",
    }
    for text, message in bad.items():
        cfg.write_text(text)
        out = cli("listen", "--config", str(cfg), "--check-config")
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (text, out.stderr)


def test_purge_removes_only_finished_studies_past_retention(tmp_path, pacs_exam):
    spool = Spool(tmp_path / "spool")
    cine, lge = pacs_exam.cine.paths, pacs_exam.lge.paths
    for p in [*cine, *lge]:
        spool.store(inspect_instance(Path(p)), Path(p), calling_aet="MODALITY")
    study = str(pydicom.dcmread(cine[0], stop_before_pixels=True).StudyInstanceUID)
    job_dir = spool.path_for("jobs", "1", "attempt1", "out")
    job_dir.mkdir(parents=True)
    (job_dir / "report.json").write_text("{}")
    spool._tx("INSERT INTO jobs(study_uid, signature, state, created) VALUES (?, 'x', 'sent', 0)", (study,))
    spool._tx("UPDATE studies SET state='done', last_received=? WHERE study_uid=?", (time.time() - 40 * 86400, study))
    spool.close()
    folder = tmp_path / "spool" / "studies" / study_key(study)
    assert len(list(folder.iterdir())) == len(cine) + len(lge)

    dry = cli("jobs", "purge", "--spool", str(tmp_path / "spool"), "--older-than-days", "30", "--dry-run", "--json")
    assert dry.returncode == 0 and json.loads(dry.stdout)["studies"] == 1 and folder.is_dir()
    kept = cli("jobs", "purge", "--spool", str(tmp_path / "spool"), "--older-than-days", "60", "--json")
    assert json.loads(kept.stdout)["studies"] == 0 and folder.is_dir()
    in_flight = folder / "1.2.3.4.dcm"  # an image being written right now: on disk, not yet in the database
    in_flight.write_bytes(Path(cine[0]).read_bytes())
    gone = cli("jobs", "purge", "--spool", str(tmp_path / "spool"), "--older-than-days", "30", "--json")
    report = json.loads(gone.stdout)
    assert report["studies"] == 1 and report["jobs"] == 1
    assert report["bytes_freed"] >= sum(Path(p).stat().st_size for p in [*cine, *lge])
    assert list(folder.iterdir()) == [in_flight] and not (tmp_path / "spool" / "jobs" / "1").exists()
    in_flight.unlink()
    spool = Spool(tmp_path / "spool")
    assert spool.status()["instances"] == 0 and spool.status()["jobs"] == []
    # a study still receiving is never purged, however old
    spool.store(inspect_instance(Path(cine[0])), Path(cine[0]), calling_aet="MODALITY")
    spool._tx("UPDATE studies SET last_received=0")
    assert purge(spool, max_age_s=1.0, max_bytes=0).studies == 0
    spool.close()


@pytest.mark.skipif(not Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2").exists(),
                    reason="Debian libjemalloc2 is not installed (apt-get install libjemalloc2)")
def test_analysis_workers_run_under_jemalloc_when_the_allocator_says_so(tmp_path, pacs_exam):
    from zeroclick.pipelines.pacs.config import worker_env

    probe = tmp_path / "allocator.txt"
    lst = _listener(tmp_path, None, "zc_service_analysis:allocator_probe",
                    {"ZC_TEST_ALLOCATOR": str(probe), **worker_env("jemalloc")})
    try:
        files = exam_files(pacs_exam)
        assert push(files, lst.port) == [0] * len(files)
        wait_for(lambda: probe.exists() and job_rows(tmp_path / "spool")[0]["state"] == "done", 90, "the analysis")
        assert probe.read_text() == "jemalloc"
    finally:
        lst.stop()
    assert worker_env("system") == {}
