"""Issue 15 (security): crafted UIDs never become paths; they are refused with a failure status and logged."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pydicom
import pytest
from zc_listener_helpers import free_port, push_datasets  # noqa: I001 - test helper beside this file

from zeroclick.pipelines.pacs.listener import Listener, ListenerConfig
from zeroclick.pipelines.pacs.spool import UnsafeNameError, check_uid, inside

pytestmark = pytest.mark.pacs


def test_check_uid_accepts_uids_and_refuses_everything_else():
    assert check_uid("1.2.840.10008.5.1.4.1.1.4", "uid") == "1.2.840.10008.5.1.4.1.1.4"
    assert check_uid("1" * 64, "uid") == "1" * 64
    for bad in ("", "../x", "/etc/passwd", "1.2/3", "1..2", ".1", "1.", "1.2.a", "1" * 65, "1.2\x00", "１.２"):
        with pytest.raises(UnsafeNameError):
            check_uid(bad, "uid")


def test_inside_refuses_paths_that_leave_the_root(tmp_path):
    (tmp_path / "root").mkdir()
    assert inside(tmp_path / "root", tmp_path / "root" / "a" / "b.dcm") == (tmp_path / "root" / "a" / "b.dcm")
    for escape in (tmp_path / "root" / ".." / "x", Path("/tmp/x"), tmp_path / "rootx" / "y"):
        with pytest.raises(UnsafeNameError):
            inside(tmp_path / "root", escape)
    os.symlink(tmp_path, tmp_path / "root" / "link")
    with pytest.raises(UnsafeNameError):  # a symbolic link inside the spool pointing out of it
        inside(tmp_path / "root", tmp_path / "root" / "link" / "z")


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_issue_15_crafted_uids_stay_out_of_the_filesystem(tmp_path, pacs_exam, caplog, monkeypatch):
    from pynetdicom import _config

    # let the *sender* put anything on the wire (pynetdicom's client refuses UIDs over 64 characters)
    monkeypatch.setitem(_config.VALIDATORS, "UI", lambda value: (True, ""))
    caplog.set_level(logging.WARNING)
    marker = f"zc-escape-{uuid.uuid4().hex}"
    crafted = {
        "relative": f"../../../{marker}",
        "absolute": f"/tmp/{marker}",
        "deep": f"1.2/../../a/b/c/d/{marker}",
        "over_long": "1." + "2" * 70,
        "non_numeric": "1.2.840.abc",
    }
    spool = tmp_path / "work" / "spool"
    lst = Listener(ListenerConfig(spool_dir=spool, port=free_port(), allowed_aets=("MODALITY",), min_free_bytes=0,
                                  completeness="none", stable_s=3600))
    lst.start()
    before = _files_under(tmp_path) - _files_under(spool)
    try:
        datasets, expected = [], []
        for field in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
            for kind, uid in crafted.items():
                ds = pydicom.dcmread(pacs_exam.lge.paths[0])
                setattr(ds, field, uid)
                if field == "SOPInstanceUID":
                    ds.file_meta.MediaStorageSOPInstanceUID = uid
                datasets.append(ds)
                expected.append((field, kind))
        statuses = push_datasets(datasets, lst.port)
        good = push_datasets([pydicom.dcmread(pacs_exam.lge.paths[1])], lst.port)
    finally:
        lst.stop()
    assert statuses == [0xC000] * len(datasets), list(zip(expected, statuses))
    assert good == [0]  # the association and the listener stayed usable
    # nothing was written anywhere outside the spool, nor under a crafted name inside it
    assert _files_under(tmp_path) - _files_under(spool) == before
    assert not list(Path("/tmp").glob(f"{marker}*")) and not list(tmp_path.rglob(f"{marker}*"))
    spooled = [p for p in _files_under(spool) if p.suffix == ".dcm"]
    assert [p.name for p in spooled] == [f"{pydicom.dcmread(pacs_exam.lge.paths[1]).SOPInstanceUID}.dcm"]
    # our log says why, per UID, without echoing the crafted value (pydicom's own warnings do echo it)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("zeroclick"))
    for what in ("SOP Instance UID", "Series Instance UID", "Study Instance UID"):
        assert f"{what} is not a DICOM UID" in text
        assert f"{what} is 72 characters long" in text
    assert "refused (0xC000)" in text and marker not in text


def test_inspect_instance_ends_every_mutated_file_in_a_named_outcome(tmp_path, pacs_exam):
    """300 seeded mutations (byte flips in the header, truncations, insertions) of a received file: each one is
    read (pixel problem named or not) or refused with an InvalidInputError; no other exception escapes."""
    from collections import Counter

    import numpy as np

    from zeroclick.imaging.errors import InvalidInputError
    from zeroclick.pipelines.pacs.spool import inspect_instance

    rng = np.random.default_rng(15)
    source = Path(pacs_exam.lge.paths[0]).read_bytes()
    header_end = source.index(b"\xe0\x7f\x10\x00")  # the Pixel Data tag
    outcomes: Counter[str] = Counter()
    for i in range(300):
        data = bytearray(source)
        if i % 3 == 0:
            for pos in rng.integers(132, header_end, size=int(rng.integers(1, 8))):
                data[pos] = int(rng.integers(0, 256))
        elif i % 3 == 1:
            del data[int(rng.integers(0, len(data))):]
        else:
            pos = int(rng.integers(132, header_end))
            data[pos:pos] = rng.integers(0, 256, size=int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
        path = tmp_path / f"mutant{i:03d}.dcm"
        path.write_bytes(bytes(data))
        try:
            info = inspect_instance(path)
        except InvalidInputError:
            outcomes["refused"] += 1
            continue
        outcomes["pixel_problem" if info.problem else "accepted"] += 1
    print(f"\n300 mutated files: {dict(outcomes)}")
    assert sum(outcomes.values()) == 300 and outcomes["refused"] > 0 and outcomes["pixel_problem"] > 0
