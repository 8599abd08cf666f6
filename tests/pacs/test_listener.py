"""``zeroclick listen``: reception rules, idempotency, results sent once, and crash safety under SIGKILL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt
from zc_listener_helpers import PYTHONPATH, ListenerProcess, free_port, make_cert, wait_for  # noqa: I001

from zeroclick.pipelines.pacs.listener import Listener, ListenerConfig, Spool
from zeroclick.pipelines.pacs.send import send_files, set_tcp_nodelay

ANALYSIS = "zc_threshold_analysis:analyse"

pytestmark = pytest.mark.pacs


@pytest.fixture
def destination():
    """A Storage SCP standing for the hospital PACS; records every C-STORE it receives."""
    received: list[tuple[str, str]] = []
    lock = threading.Lock()

    def on_store(event):
        ds = event.dataset
        with lock:
            received.append((str(ds.SOPInstanceUID), str(ds.Modality)))
        return 0x0000

    ae = AE(ae_title="DEST")
    from pydicom.uid import AllTransferSyntaxes

    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, AllTransferSyntaxes)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, on_store), (evt.EVT_CONN_OPEN, set_tcp_nodelay)])
    yield f"DEST@127.0.0.1:{port}", received
    server.shutdown()


def push(paths, port: int, *, aet: str = "MODALITY", acked: list[str] | None = None, delay_s: float = 0.0):
    """C-STORE ``paths`` one by one; returns the statuses (None where the association broke)."""
    ae = AE(ae_title=aet)
    ae.dimse_timeout = ae.network_timeout = ae.acse_timeout = 90  # this CI machine can be very loaded
    classes = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID) for p in paths}
    for c in classes:
        ae.add_requested_context(c)
    assoc = ae.associate("127.0.0.1", port, ae_title="ZEROCLICK", evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)])
    if not assoc.is_established:
        return None
    statuses = []
    try:
        for p in paths:
            ds = pydicom.dcmread(p)
            st = assoc.send_c_store(ds) if assoc.is_established else None
            code = int(st.Status) if st else None
            statuses.append(code)
            if code == 0 and acked is not None:
                acked.append(str(ds.SOPInstanceUID))
            if delay_s:
                time.sleep(delay_s)
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def exam_files(exam) -> list[Path]:
    return [*exam.cine.paths, *exam.lge.paths]


@pytest.fixture
def listener(tmp_path, destination):
    dest, _ = destination
    cfg = ListenerConfig(spool_dir=tmp_path / "spool", port=free_port(), allowed_aets=("MODALITY",),
                         destination=dest, stable_s=0.8, analysis=ANALYSIS, extra_env={"PYTHONPATH": PYTHONPATH},
                         min_free_bytes=0, poll_s=0.1, completeness="geometry")
    lst = Listener(cfg)
    lst.start()
    yield lst
    lst.stop()


def test_receives_then_analyses_and_sends_results_once(listener, destination, pacs_exam, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    _, received = destination
    t0 = time.time()
    statuses = push(exam_files(pacs_exam), listener.port)
    t_last = time.time()
    assert statuses == [0] * 18
    wait_for(lambda: len(received) >= 5, 45, "5 result objects at the destination")
    elapsed = time.time() - t_last
    time.sleep(1.5)  # nothing more may arrive
    assert sorted(m for _, m in received) == ["DOC", "SEG", "SEG", "SEG", "SR"]
    status = listener.spool.status()
    assert status["instances"] == 18
    assert [j["state"] for j in status["jobs"]] == ["sent"]
    # no patient identifier in any log line, even at debug level
    assert caplog.text and "Test^Patient" not in caplog.text and "ZC-TEST-1" not in caplog.text
    print(f"\nlistener: reception {18 / (t_last - t0):.0f} images/s, last image -> results sent {elapsed:.2f} s")


def test_same_instance_twice_is_idempotent_and_changed_pixels_are_kept_aside(listener, pacs_exam, tmp_path):
    first = pacs_exam.lge.paths[0]
    assert push([first, first], listener.port) == [0, 0]
    changed = pydicom.dcmread(first)
    px = bytearray(changed.PixelData)
    px[100] ^= 0xFF
    changed.PixelData = bytes(px)
    changed_path = tmp_path / "changed.dcm"
    changed.save_as(changed_path)
    assert push([changed_path], listener.port) == [0]
    status = listener.spool.status()
    assert status["instances"] == 1
    assert len(status["duplicates"]) == 1
    dup = status["duplicates"][0]
    assert dup["sop_instance_uid"] == changed.SOPInstanceUID
    kept = pydicom.dcmread(listener.spool.root / dup["path"])
    assert kept.PixelData == changed.PixelData
    original = pydicom.dcmread(listener.spool.study_files(changed.StudyInstanceUID)[0])
    assert original.PixelData == pydicom.dcmread(first).PixelData


def test_truncated_pixel_data_is_refused(listener, pacs_exam, tmp_path):
    ds = pydicom.dcmread(pacs_exam.lge.paths[1])
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    path = tmp_path / "truncated.dcm"
    ds.save_as(path)
    assert push([path], listener.port) == [0xA900]
    assert listener.spool.status()["instances"] == 0


def test_unknown_calling_aet_is_rejected(listener, pacs_exam):
    assert push(pacs_exam.lge.paths[:1], listener.port, aet="INTRUDER") is None
    assert listener.spool.status()["instances"] == 0


def test_low_disk_rejects_associations(tmp_path, pacs_exam):
    cfg = ListenerConfig(spool_dir=tmp_path / "spool", port=free_port(), min_free_bytes=1 << 62)
    lst = Listener(cfg)
    lst.start()
    try:
        assert push(pacs_exam.lge.paths[:1], lst.port) is None
    finally:
        lst.stop()
    assert Spool(tmp_path / "spool").status()["instances"] == 0


def test_send_files_reports_unreachable_destination(pacs_exam):
    report = send_files(pacs_exam.lge.paths[:2], f"NOBODY@127.0.0.1:{free_port()}", retries=1, backoff_s=0.05)
    assert not report.ok and report.attempts == 2 and len(report.failed) == 2


# ------------------------------------------------------------------------------------------- SIGKILL tests


@pytest.mark.slow
def test_sigkill_during_reception_loses_no_acknowledged_instance(tmp_path, destination, pacs_exam):
    dest, received = destination
    lp = ListenerProcess(tmp_path / "spool", free_port(), dest, {"ZC_TEST_ANALYSIS_DELAY_S": "0"})
    lp.start()
    try:
        acked: list[str] = []
        sender = threading.Thread(target=push, args=(exam_files(pacs_exam), lp.port),
                                  kwargs={"acked": acked, "delay_s": 0.1})
        sender.start()
        wait_for(lambda: len(acked) >= 6, 20, "6 acknowledged instances")
        lp.kill()
        sender.join(timeout=30)
        assert 6 <= len(acked) < 18  # killed in the middle of the association
        lp.start()
        # every acknowledged instance survived the kill, on disk and in the queue
        stored = {p.stem for p in (lp.spool / "studies").rglob("*.dcm")}
        assert set(acked) <= stored
        spool = Spool(lp.spool)
        known = {r[0] for r in spool._tx("SELECT sop_uid FROM instances")}
        spool.close()
        assert set(acked) <= known
        # the modality resends the whole study at once (it never got answers for the rest)
        assert push(exam_files(pacs_exam), lp.port) == [0] * 18, lp.log()
        wait_for(lambda: len(received) >= 5, 120, "results at the destination", lp.log)
        time.sleep(1.5)
        assert len(received) == 5 and len({u for u, _ in received}) == 5
        final = lp.status()
        assert final["instances"] == 18 and final["duplicates"] == []
        assert [j["state"] for j in final["jobs"]] == ["sent"]
    finally:
        lp.stop()


@pytest.mark.slow
def test_sigkill_during_analysis_requeues_the_job_and_sends_once(tmp_path, destination, pacs_exam):
    dest, received = destination
    marker = tmp_path / "analysis_started.txt"
    lp = ListenerProcess(tmp_path / "spool", free_port(), dest,
                         {"ZC_TEST_ANALYSIS_DELAY_S": "2", "ZC_TEST_ANALYSIS_MARKER": str(marker)})
    lp.start()
    try:
        assert push(exam_files(pacs_exam), lp.port) == [0] * 18
        wait_for(lambda: marker.exists() and marker.read_text().strip(), 30, "the analysis to start")
        first_pid = int(marker.read_text().split()[0])
        lp.kill()
        running = lp.status()
        assert [j["state"] for j in running["jobs"]] == ["running"]
        wait_for(lambda: not Path(f"/proc/{first_pid}").exists(), 10, "the orphaned analysis to die with the listener")
        assert received == []
        lp.start()
        wait_for(lambda: len(received) >= 5, 120, "results at the destination after restart", lp.log)
        time.sleep(1.5)
        assert len(received) == 5 and len({u for u, _ in received}) == 5
        final = lp.status()
        assert [(j["state"], j["attempts"]) for j in final["jobs"]] == [("sent", 2)]
        assert final["instances"] == 18
    finally:
        lp.stop()


def test_tls_reception_and_send_files_over_tls(tmp_path, pacs_exam):
    import ssl

    cert, key = make_cert(tmp_path)
    cfg = ListenerConfig(spool_dir=tmp_path / "spool", port=free_port(), allowed_aets=("MODALITY",),
                         tls_cert=cert, tls_key=key, min_free_bytes=0)
    lst = Listener(cfg)
    lst.start()
    try:
        client = ssl.create_default_context(cafile=str(cert))
        report = send_files(pacs_exam.lge.paths[:3], f"ZEROCLICK@127.0.0.1:{lst.port}", calling_aet="MODALITY",
                            tls=client, retries=0)
        assert report.ok and len(report.stored) == 3
        # a plain-TCP sender cannot store anything on the TLS port
        plain = send_files(pacs_exam.lge.paths[3:4], f"ZEROCLICK@127.0.0.1:{lst.port}", calling_aet="MODALITY",
                           retries=0, timeout_s=5)
        assert not plain.ok
        assert lst.spool.status()["instances"] == 3
    finally:
        lst.stop()


def test_send_files_decompresses_for_a_peer_without_jpeg_ls(pacs_exam, tmp_path):
    import numpy as np
    from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless

    from zeroclick.imaging.dicom.write import (
        SegmentSpec,
        derived_uid,
        save_atomically,
        segmentation_from_labels,
    )
    from zeroclick.imaging.dicom.write import codes as K

    seg = segmentation_from_labels(
        pacs_exam.lge.datasets, pacs_exam.lge.labels,
        [SegmentSpec("Infarct", K.MORPHOLOGICALLY_ABNORMAL, K.INFARCT, (3, 4))],
        series_instance_uid=derived_uid("t", "s"), sop_instance_uid=derived_uid("t", "i"), series_number=1,
        series_description="zeroclick test", algorithm_name="t", algorithm_version="1")
    path = save_atomically(seg, tmp_path / "seg.dcm")
    assert seg.file_meta.TransferSyntaxUID == JPEGLSLossless
    got = []

    def on_store(event):
        got.append((str(event.context.transfer_syntax), event.dataset))
        return 0

    ae = AE(ae_title="OLDPACS")
    ae.add_supported_context(seg.SOPClassUID, [ExplicitVRLittleEndian])  # no JPEG-LS
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        report = send_files([path], f"OLDPACS@127.0.0.1:{port}", retries=0)
    finally:
        server.shutdown()
    assert report.ok, report.failed
    assert got[0][0] == ExplicitVRLittleEndian
    received = got[0][1]
    received.file_meta = pydicom.dataset.FileMetaDataset()
    received.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    np.testing.assert_array_equal(received.pixel_array, pydicom.dcmread(path).pixel_array)
