"""Issue 18 (study integrity): conflicts kept, completeness before analysis across restarts, re-analysis supersedes.

The exam here is a small cardiac study the scan classifies like a real one: a short-axis cine of 6 slices x 10
phases and an LGE PSIR stack of 6 slices (66 files, written with pydicom by ``zc_mini_exam.make_mr_series``).
The stand-in analysis ``zc_count_analysis`` writes one SR whose UID is a function of the images it saw.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from zc_listener_helpers import (  # noqa: I001 - test helpers beside this file
    PYTHONPATH,
    ListenerProcess,
    RecordingScp,
    free_port,
    push,
    push_datasets,
    wait_for,
)

from zeroclick.pipelines.pacs.listener import Listener, ListenerConfig
from zeroclick.pipelines.pacs.spool import study_key

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dicom_write"))
from zc_count_analysis import sr_uid_for  # noqa: E402
from zc_mini_exam import make_mr_series  # noqa: E402

pytestmark = pytest.mark.pacs

COUNT = "zc_count_analysis:analyse"


@dataclass
class CardiacExam:
    cine: list[Path]  # phase-major: all slices of phase 0, then phase 1, ...
    lge: list[Path]
    study_uid: str

    @property
    def files(self) -> list[Path]:
        return [*self.cine, *self.lge]


@pytest.fixture(scope="module")
def cardiac_exam(tmp_path_factory) -> CardiacExam:
    root = tmp_path_factory.mktemp("cardiac_exam")
    study, frame = generate_uid(entropy_srcs=["zc-integrity-study"]), generate_uid(entropy_srcs=["zc-integrity-frame"])
    cine = make_mr_series(root / "cine", study_uid=study, frame_uid=frame, series_number=5, description="cine SAX",
                          n_phases=10, lge=False)
    lge = make_mr_series(root / "lge", study_uid=study, frame_uid=frame, series_number=9, description="LGE PSIR SAX",
                         n_phases=1, lge=True)
    return CardiacExam(cine.paths, lge.paths, study)


def _uids(paths) -> list[str]:
    return [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]


def _in_process(tmp_path: Path, dest: str | None, **kwargs) -> Listener:
    cfg = ListenerConfig(spool_dir=tmp_path / "spool", port=free_port(), allowed_aets=("MODALITY",), destination=dest,
                         analysis=COUNT, extra_env={"PYTHONPATH": PYTHONPATH}, min_free_bytes=0, poll_s=0.1,
                         **{"stable_s": 0.5, **kwargs})
    lst = Listener(cfg)
    lst.start()
    return lst


def _study(lst: Listener, study_uid: str) -> dict:
    return lst.spool.status()["studies"].get(study_key(study_uid), {})


# ------------------------------------------------------------------------------------------------ conflicts


def test_issue_18_concurrent_conflicting_stores_lose_no_version(tmp_path, pacs_exam):
    """Two senders store the same 240 SOP Instance UIDs with different pixels at the same time."""
    base = pydicom.dcmread(pacs_exam.lge.paths[0])
    study = generate_uid()
    versions: dict[str, list[pydicom.Dataset]] = {"A": [], "B": []}
    truth: dict[str, set[str]] = {}
    for i in range(240):
        uid = generate_uid(entropy_srcs=["zc-race", str(i)])
        for name, offset in (("A", 0), ("B", 1000)):
            ds = pydicom.dcmread(pacs_exam.lge.paths[0])
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
            ds.StudyInstanceUID = study
            ds.PixelData = np.full((base.Rows, base.Columns), i + offset, np.uint16).tobytes()
            versions[name].append(ds)
            truth.setdefault(uid, set()).add(hashlib.sha256(ds.PixelData).hexdigest())
    lst = _in_process(tmp_path, None, completeness="none")
    try:
        start = threading.Barrier(2)
        results: dict[str, list | None] = {}

        def sender(name: str) -> None:
            start.wait()
            results[name] = push_datasets(versions[name], lst.port)

        threads = [threading.Thread(target=sender, args=(n,)) for n in versions]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert results == {"A": [0] * 240, "B": [0] * 240}
        wait_for(lambda: _study(lst, study).get("state") == "conflicting_instances", 20, "the conflict flag")
        status = lst.spool.status()
        assert status["instances"] == 240 and len(status["duplicates"]) == 240
        assert status["jobs"] == []  # not analysed while the conflict stands
        assert "240 instance(s) received again with different pixels" in _study(lst, study)["reason"]

        def kept() -> dict[str, set[str]]:
            rows = lst.spool._tx("SELECT sop_uid, path, pixel_sha256 FROM instances UNION ALL "
                                 "SELECT sop_uid, path, pixel_sha256 FROM duplicates")
            found: dict[str, set[str]] = {}
            for uid, path, digest in rows:
                on_disk = hashlib.sha256(pydicom.dcmread(lst.spool.root / path).PixelData).hexdigest()
                assert on_disk == digest, f"spool file {path} does not match its database hash"
                found.setdefault(uid, set()).add(digest)
            return found

        assert kept() == truth  # every version of every UID, each file matching its recorded hash
        # resolving keeps every version and analyses the chosen one
        first = dict(lst.spool._tx("SELECT sop_uid, pixel_sha256 FROM instances"))
        assert lst.spool.resolve_conflicts(study_key(study), keep="latest") == 240
        latest = dict(lst.spool._tx("SELECT sop_uid, pixel_sha256 FROM instances"))
        assert all(latest[u] != first[u] and {latest[u], first[u]} == truth[u] for u in truth)
        assert kept() == truth
        wait_for(lambda: [j["state"] for j in lst.spool.status()["jobs"]] == ["done"], 60, "the analysis")
    finally:
        lst.stop()


# ---------------------------------------------------------------------------------------------- completeness


@pytest.mark.slow
def test_issue_18_partial_study_survives_kill_9_and_is_analysed_once_complete(tmp_path, cardiac_exam):
    dest = RecordingScp()
    lp = ListenerProcess(tmp_path / "spool", free_port(), dest.address, {}, analysis=COUNT, completeness="cardiac",
                         stable_s=2.0)  # a loaded CI machine may pause a sender for a second
    lp.start()
    try:
        partial = cardiac_exam.cine[:40]  # 4 of 10 phases of every slice, and a 5th phase of 4 slices
        assert push(partial, lp.port) == [0] * 40
        wait_for(lambda: lp.status()["instances"] == 40, 20, "40 instances spooled", lp.log)
        lp.kill()
        time.sleep(2.5)  # the quiet period passes while the listener is down
        lp.start()
        key = study_key(cardiac_exam.study_uid)
        wait_for(lambda: lp.status()["studies"].get(key, {}).get("state") == "waiting", 20, "the study to wait",
                 lp.log)
        time.sleep(1.0)
        state = lp.status()
        assert state["jobs"] == [] and dest.received == []
        assert "series 5 (cine_sax) is not a regular stack yet" in state["studies"][key]["reason"]
        # the modality sends the whole study again (it never heard back about the rest)
        assert push(cardiac_exam.files, lp.port) == [0] * 66
        wait_for(lambda: len(dest.received) >= 1, 60, "the results", lp.log)
        time.sleep(2.0)
        assert [str(ds.SOPInstanceUID) for ds in dest.received] == [sr_uid_for(_uids(cardiac_exam.files))]
        assert [j["state"] for j in lp.status()["jobs"]] == ["sent"]
    finally:
        lp.stop()
        dest.close()


def test_incomplete_study_ends_incomplete_after_the_maximum_wait_and_nothing_is_sent(tmp_path, cardiac_exam):
    dest = RecordingScp()
    lst = _in_process(tmp_path, dest.address, stable_s=0.3, max_wait_s=1.5)
    try:
        gapped = [p for i, p in enumerate(cardiac_exam.cine) if i % 6 != 3] + cardiac_exam.lge  # slice 3 missing
        assert push(gapped, lst.port) == [0] * len(gapped)
        wait_for(lambda: _study(lst, cardiac_exam.study_uid).get("state") == "incomplete", 20, "the incomplete state")
        assert "slice position gap" in _study(lst, cardiac_exam.study_uid)["reason"]
        time.sleep(0.5)
        assert lst.spool.status()["jobs"] == [] and dest.received == []
        # the missing slice arrives later: the study is analysed, once
        missing = [p for i, p in enumerate(cardiac_exam.cine) if i % 6 == 3]
        assert push(missing, lst.port) == [0] * len(missing)
        wait_for(lambda: len(dest.received) >= 1, 60, "the results")
        time.sleep(1.0)
        assert [str(ds.SOPInstanceUID) for ds in dest.received] == [sr_uid_for(_uids(cardiac_exam.files))]
    finally:
        lst.stop()
        dest.close()


def test_reanalysis_supersedes_the_earlier_results(tmp_path, cardiac_exam):
    dest = RecordingScp()
    lst = _in_process(tmp_path, dest.address, stable_s=2.0)  # no pause of a loaded machine looks like the end
    try:
        assert push(cardiac_exam.cine, lst.port) == [0] * 60  # the cine alone is a complete study
        wait_for(lambda: len(dest.received) >= 1, 60, "the first results")
        assert push(cardiac_exam.lge, lst.port) == [0] * 6  # the LGE arrives later: analysed again
        wait_for(lambda: len(dest.received) >= 2, 60, "the second results")
        time.sleep(1.0)
        first, second = dest.received
        assert str(first.SOPInstanceUID) == sr_uid_for(_uids(cardiac_exam.cine))
        assert str(second.SOPInstanceUID) == sr_uid_for(_uids(cardiac_exam.files))
        assert "PredecessorDocumentsSequence" not in first
        (study_ref,) = second.PredecessorDocumentsSequence
        assert study_ref.StudyInstanceUID == cardiac_exam.study_uid
        (series_ref,) = study_ref.ReferencedSeriesSequence
        assert series_ref.SeriesInstanceUID == first.SeriesInstanceUID
        assert [r.ReferencedSOPInstanceUID for r in series_ref.ReferencedSOPSequence] == [first.SOPInstanceUID]
        jobs = lst.spool.status()["jobs"]
        assert [(j["state"], j["supersedes"]) for j in jobs] == [("sent", None), ("sent", jobs[0]["id"])]
    finally:
        lst.stop()
        dest.close()


def test_a_lone_localizer_is_nothing_to_analyse_not_a_failed_job(tmp_path, pacs_exam):
    study = generate_uid()
    localizers = []
    for i, orientation in enumerate(([1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 0, -1], [0, 1, 0, 0, 0, -1])):
        ds = pydicom.dcmread(pacs_exam.lge.paths[0])
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid(entropy_srcs=[study, "loc"])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[study, str(i)])
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImageOrientationPatient = orientation
        localizers.append(ds)
    lst = _in_process(tmp_path, None)
    try:
        assert push_datasets(localizers, lst.port) == [0, 0, 0]
        wait_for(lambda: _study(lst, study).get("state") == "nothing_to_analyse", 20, "nothing to analyse")
        assert "found: localizer" in _study(lst, study)["reason"]
        time.sleep(0.5)
        assert lst.spool.status()["jobs"] == []
    finally:
        lst.stop()


def _conflicting_spool(tmp_path: Path, pacs_exam):
    """A spool holding one instance in two versions (the second with zeroed pixels); returns (spool, changed)."""
    from zeroclick.pipelines.pacs.spool import Spool, inspect_instance

    first = Path(pacs_exam.lge.paths[0])
    changed = pydicom.dcmread(first)
    changed.PixelData = np.zeros((changed.Rows, changed.Columns), np.uint16).tobytes()
    other = tmp_path / "changed.dcm"
    changed.save_as(other)
    spool = Spool(tmp_path / "spool")
    assert spool.store(inspect_instance(first), first, calling_aet="A") == "stored"
    assert spool.store(inspect_instance(other), other, calling_aet="B") == "duplicate"
    return spool, changed


def test_a_kept_version_whose_database_row_was_lost_is_recorded_again_on_restart(tmp_path, pacs_exam):
    from zeroclick.pipelines.pacs.spool import Spool

    spool, changed = _conflicting_spool(tmp_path, pacs_exam)
    spool._tx("DELETE FROM duplicates")  # as if killed between the file's rename and the database commit
    spool._tx("UPDATE studies SET conflicts=0")
    spool.close()
    spool = Spool(tmp_path / "spool")
    assert spool.recover()["indexed"] == 1
    (dup,) = spool.status()["duplicates"]
    assert dup["pixel_sha256"] == hashlib.sha256(changed.PixelData).hexdigest()
    assert spool.status()["studies"][study_key(changed.StudyInstanceUID)]["conflicts"] == 1
    spool.close()


def test_resolve_on_the_command_line_releases_a_conflicting_study(tmp_path, pacs_exam):
    import json
    import os
    import subprocess

    from zeroclick.pipelines.pacs.spool import Spool

    spool, changed = _conflicting_spool(tmp_path, pacs_exam)
    spool.close()
    key = study_key(changed.StudyInstanceUID)
    cli = [sys.executable, "-m", "zeroclick.pipelines.pacs.listener", "--spool", str(tmp_path / "spool")]
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    out = subprocess.run([*cli, "--resolve", key, "--keep", "latest"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"study": key, "resolved": 1, "kept": "latest"}
    status = json.loads(subprocess.run([*cli, "--status"], capture_output=True, text=True, env=env,
                                       timeout=60).stdout)
    assert status["studies"][key] == {"state": "receiving", "reason": None, "conflicts": 0}
    spool = Spool(tmp_path / "spool")
    (kept,) = spool.study_files(changed.StudyInstanceUID)
    assert pydicom.dcmread(kept).PixelData == changed.PixelData  # the latest version is the one analysed
    spool.close()
    bad = subprocess.run([*cli, "--resolve", "0" * 16], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "no study" in bad.stderr and "Traceback" not in bad.stderr


def test_a_cine_with_fewer_phases_than_announced_waits(tmp_path, cardiac_exam):
    """Sent phase by phase, 6 of 10 phases form a regular grid; CardiacNumberOfImages=10 says more will come."""
    from zeroclick.pipelines.pacs.completeness import assess

    copies = []
    for i, path in enumerate(cardiac_exam.cine):
        ds = pydicom.dcmread(path)
        ds.CardiacNumberOfImages = 10
        copies.append(tmp_path / f"{i:03d}.dcm")
        ds.save_as(copies[-1])
    first_six_phases = copies[:36]
    readiness = assess(first_six_phases)
    assert readiness.state == "waiting" and "6 of 10 phases (CardiacNumberOfImages)" in readiness.reason
    assert assess(copies).state == "ready"


def test_issue_18_the_151_of_400_images_of_the_issue_wait(tmp_path):
    """The partial study of issue 18 (a generated 400-image exam without its cine and with 3 of 12 PSIR slices)
    waits with a named reason; the whole exam is ready; a cine cut inside a slice waits."""
    from zeroclick.imaging.dicom import scan
    from zeroclick.imaging.synthetic.cmr import generate_exam
    from zeroclick.pipelines.pacs.completeness import assess

    generate_exam(tmp_path / "exam", n_images=400, seed=0)
    exam = scan(tmp_path / "exam" / "dicom", strictness="ignore", workers=1)
    by_label = {s.label: [Path(p) for p in s.paths] for s in exam.series}
    partial = [p for label, paths in by_label.items() if label not in ("cine_sax", "lge_psir") for p in paths]
    partial += by_label["lge_psir"][:3]
    assert len(partial) == 151
    readiness = assess(partial)
    assert readiness.state == "waiting" and "no short-axis cine" in readiness.reason
    everything = [p for paths in by_label.values() for p in paths]
    assert len(everything) == 400 and assess(everything).state == "ready"
    cine = by_label["cine_sax"]  # volume order: phase-major
    cut = [p for p in everything if p not in set(cine[len(cine) // 2 + 3:])]
    cut_readiness = assess(cut)
    assert cut_readiness.state == "waiting" and "series 2 (cine_sax)" in cut_readiness.reason
