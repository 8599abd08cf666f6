"""Issue 15: hostile and broken DICOM never gives a traceback, a hang or a silent crash.

Property-based (hypothesis, derandomized: the same cases on every run, so a failure reproduces): header values
(non-numeric DS/IS, decimal commas, NaN/inf, UTF-16 bytes, wrong multiplicity), lengths, VRs, missing and
duplicated tags, wrong pixel lengths, truncation and byte flips of generated files (explicit and implicit VR,
RLE, JPEG baseline, an enhanced multi-frame T1 map), then series-level damage
(missing/duplicated/conflicting files, mixed studies, orientations and sizes, archives) and whole cardiac exams
through ``run()`` and the ``zeroclick cmr`` command line. Every case must end as a result (possibly with
recorded warnings or rejections) or a :class:`~zeroclick.imaging.errors.ZeroClickError`, within a time bound.
The counts are printed in the pytest summary ("zeroclick fuzz counts").
"""

from __future__ import annotations

import json
import shutil
import signal
import time
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cardiac.phantom import LutSegmenter
from tests.dicom.dicom_factory import sax_orientation, uid, write_mr
from tests.fuzz import rawdicom
from tests.fuzz.cmr_exam import write_exam
from tests.fuzz.fuzzcounts import record
from zeroclick.imaging.dicom import scan
from zeroclick.imaging.errors import ZeroClickError, ZeroClickWarning

SEED_SETTINGS = dict(derandomize=True, database=None, deadline=None, print_blob=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                            HealthCheck.data_too_large])
N_FILE_CASES = 450
N_SERIES_CASES = 100
N_CMR_CASES = 40
SCAN_SECONDS = 10.0  # per case; the slowest clean case takes ~0.1 s
CMR_SECONDS = 60.0

TAGS = {
    "PatientSize": 0x00101020, "PatientWeight": 0x00101030, "SliceThickness": 0x00180050,
    "RepetitionTime": 0x00180080, "EchoTime": 0x00180081, "InversionTime": 0x00180082,
    "TriggerTime": 0x00181060, "NominalInterval": 0x00181062, "HeartRate": 0x00181088,
    "SeriesNumber": 0x00200011, "InstanceNumber": 0x00200013, "ImagePositionPatient": 0x00200032,
    "ImageOrientationPatient": 0x00200037, "PixelSpacing": 0x00280030, "RescaleIntercept": 0x00281052,
    "RescaleSlope": 0x00281053, "NumberOfFrames": 0x00280008, "SpacingBetweenSlices": 0x00180088,
    "AcquisitionTime": 0x00080032,
}
US_TAGS = {"Rows": 0x00280010, "Columns": 0x00280011, "BitsAllocated": 0x00280100, "BitsStored": 0x00280101,
           "SamplesPerPixel": 0x00280002, "PixelRepresentation": 0x00280103}
UID_TAGS = {"SOPInstanceUID": 0x00080018, "StudyInstanceUID": 0x0020000D, "SeriesInstanceUID": 0x0020000E,
            "SOPClassUID": 0x00080016, "FrameOfReferenceUID": 0x00200052}
TEXT_TAGS = {"SpecificCharacterSet": 0x00080005, "SeriesDescription": 0x0008103E, "ImageType": 0x00080008,
             "Modality": 0x00080060, "PatientID": 0x00100020}
PIXEL_DATA = 0x7FE00010
ALL_TAGS = {**TAGS, **US_TAGS, **UID_TAGS, **TEXT_TAGS, "PixelData": PIXEL_DATA}

HOSTILE_NUMBERS = [b"--5", b"0x10", b"12 34", b"1,5", b"1,58", "1,5".encode("utf-16"), "12.5".encode("utf-16-le"),
                   b"nan", b"NaN\\NaN\\NaN", b"inf", b"-inf", b"1e308\\1e308\\1e308", b"1e999", b"", b"\\\\",
                   b"1\\2", b"1\\2\\3\\4\\5\\6\\7", b"0\\0\\0\\0\\0\\0", b"0\\0", b"-1.5\\-1.5", b"\xff\xfe",
                   b" ", b"+", b"1.5.5", b"1e", b"12345678901234567890", b"-0", b"3,5\\3,5", b"1,0\\0\\0\\0\\1,0\\0",
                   b"1\\0\\0\\1\\0\\0", b"65536", b"-2147483649", b"4294967296", b"1.0e-320"]
HOSTILE_UIDS = [b"", b"../../../etc/passwd", b"/abs/path", b"1.2.3." + b"4" * 200, b"1..2", b"\x00\x01",
                b"1.2.840.10008.5.1.4.1.1.88.11", b"1.2.840.10008.1.3.10", "ü.1".encode()]
HOSTILE_TEXT = [b"ISO_IR 192", b"ISO 2022 IR 87", b"GB18030", b"\xff\xfe\xfd", "café".encode("utf-16"),
                b"ORIGINAL\\PRIMARY\\M\\ND" * 20, b"\\", b"MR\\CT", b"ISO_IR 100\\ISO_IR 192"]
numbers = st.one_of(st.sampled_from(HOSTILE_NUMBERS),
                    st.text(alphabet="0123456789.,-+eE \\naifx", max_size=16).map(lambda t: t.encode("latin-1")))


class Hang(Exception):
    """A case ran past its time bound."""


@contextmanager
def time_bound(seconds: float):
    def _alarm(signum, frame):
        raise Hang(f"ran past {seconds} s")

    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)  # pytest-timeout's own alarm, if it set one
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer_left) if outer_left > 0 else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left > 0:  # give the outer alarm back what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - started), 0.001))


# ------------------------------------------------------------------------------------------- base files


def _base_series(folder: Path, n_slices: int = 3, n_phases: int = 4) -> list[Path]:
    o = sax_orientation()
    normal = np.cross(o[:3], o[3:])
    paths = []
    inst = 0
    for s in range(n_slices):
        for p in range(n_phases):
            inst += 1
            paths.append(write_mr(
                folder / f"im{inst:04d}.dcm", study=uid(5, 50), series=uid(7, 50, 2), sop=uid(8, 50, inst),
                series_number=2, description="cine_sax", position=tuple(np.array([10.0, 20.0, 30.0]) + 8 * s * normal),
                orientation=o, instance_number=inst, trigger_time=40.0 * p, rows=16, cols=16))
    return paths


def _other_encodings(folder: Path) -> list[bytes]:
    """The same image as RLE, JPEG baseline and implicit VR files, and a generated enhanced multi-frame T1 map."""
    from pydicom.uid import ImplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless

    from zeroclick.imaging.synthetic import cmr

    out = []
    for i, ts in enumerate((RLELossless, JPEGBaseline8Bit, ImplicitVRLittleEndian)):
        out.append(write_mr(folder / f"ts{i}.dcm", study=uid(5, 51), series=uid(7, 51, i), sop=uid(8, 51, i),
                            series_number=3 + i, position=(0.0, 0.0, 0.0), orientation=sax_orientation(),
                            trigger_time=0.0, rows=16, cols=16, transfer_syntax=ts,
                            pixels=np.arange(256).reshape(16, 16) % 200).read_bytes())
    cmr.generate_exam(folder / "enhanced", n_images=cmr.minimum_images(), vendor="philips", enhanced=True, seed=1,
                      workers=1)
    out.append(min((f for f in (folder / "enhanced" / "dicom").rglob("*.dcm")), key=lambda f: f.stat().st_size)
               .read_bytes())  # the T1 map, ~220 KB: functional groups for the enhanced parser
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, list[bytes]]:
    folder = tmp_path_factory.mktemp("fuzz_base")
    return {"series": [p.read_bytes() for p in _base_series(folder)], "other": _other_encodings(folder)}


@st.composite
def mutation(draw):
    """One damaging edit of a file's bytes, as (name, function bytes -> bytes)."""
    kind = draw(st.sampled_from(["number", "us", "uid", "text", "delete", "duplicate", "length", "vr", "pixels",
                                 "truncate", "flip"]))
    if kind == "number":
        name, value = draw(st.sampled_from(sorted(TAGS))), draw(numbers)
        return f"{name}={value[:12]!r}", lambda b: rawdicom.set_value(b, TAGS[name], value, b"DS" if name not in (
            "HeartRate", "SeriesNumber", "InstanceNumber", "NumberOfFrames") else b"IS")
    if kind == "us":
        name = draw(st.sampled_from(sorted(US_TAGS)))
        value = draw(st.one_of(st.sampled_from([0, 1, 7, 12, 32, 64, 65535]), st.integers(0, 65535)))
        return f"{name}={value}", lambda b: rawdicom.set_us(b, US_TAGS[name], value)
    if kind == "uid":
        name, value = draw(st.sampled_from(sorted(UID_TAGS))), draw(st.sampled_from(HOSTILE_UIDS))
        return f"{name}={value[:12]!r}", lambda b: rawdicom.set_value(b, UID_TAGS[name], value, b"UI")
    if kind == "text":
        name, value = draw(st.sampled_from(sorted(TEXT_TAGS))), draw(st.sampled_from(HOSTILE_TEXT))
        return f"{name}={value[:12]!r}", lambda b: rawdicom.set_value(b, TEXT_TAGS[name], value, b"CS")
    if kind == "delete":
        name = draw(st.sampled_from(sorted(ALL_TAGS)))
        return f"delete {name}", lambda b: rawdicom.delete(b, ALL_TAGS[name])
    if kind == "duplicate":
        name = draw(st.sampled_from(sorted({**TAGS, **UID_TAGS})))
        value = draw(st.one_of(st.none(), numbers))
        return f"duplicate {name}", lambda b: rawdicom.duplicate(b, ALL_TAGS[name], value)
    if kind == "length":
        name = draw(st.sampled_from(sorted(ALL_TAGS)))
        value = draw(st.one_of(st.sampled_from([0, 1, 3, 0xFFFF, 0xFFFFFFFE, 0xFFFFFFFF]), st.integers(0, 4096)))
        return f"length {name}={value}", lambda b: rawdicom.set_length(b, ALL_TAGS[name], value)
    if kind == "vr":
        name = draw(st.sampled_from(sorted(ALL_TAGS)))
        vr = draw(st.sampled_from([b"UN", b"OB", b"SQ", b"FD", b"US", b"IS", b"DS", b"LO", b"\x00\x00", b"zz"]))
        return f"vr {name}={vr!r}", lambda b: rawdicom.set_vr(b, ALL_TAGS[name], vr)
    if kind == "pixels":
        n = draw(st.sampled_from([0, 1, 255, 511, 513, 1024, 4096]))
        return f"pixels {n} bytes", lambda b: rawdicom.set_value(b, PIXEL_DATA, b"\x01" * n, b"OW")
    if kind == "truncate":
        frac = draw(st.floats(0.0, 0.999))
        return f"truncate at {frac:.3f}", lambda b: b[: int(len(b) * frac)]
    positions = draw(st.lists(st.floats(0.0, 0.999), min_size=1, max_size=8))
    byte = draw(st.integers(0, 255))

    def flip(b: bytes) -> bytes:
        arr = bytearray(b)
        for f in positions:
            arr[int(len(arr) * f)] = byte
        return bytes(arr)

    return f"flip {len(positions)} bytes to {byte}", flip


def _classify(fn, target: str, seconds: float) -> str:
    """Run ``fn``; record and return ``clean``, ``warning``, ``named_error``, ``other_exception`` or ``hang``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with time_bound(seconds):
                noted = fn()
        except ZeroClickError:
            outcome = "named_error"
        except Hang:
            outcome = "hang"
        except Exception:  # noqa: BLE001 - counted, then re-raised by the caller's assertion
            record(target, "other_exception")
            raise
        else:
            outcome = "warning" if noted or any(issubclass(w.category, ZeroClickWarning) for w in caught) else "clean"
    record(target, outcome)
    return outcome


def _scan_and_decode(source) -> bool:
    """scan + decode every regular series; True when anything was recorded (rejection, problem, note)."""
    exam = scan(source, workers=1)
    for r in exam.rejected:  # which named reasons the corpus reaches (printed with the counts)
        record("reject_codes", r.code)
    for s in exam.series:
        try:
            s.volume()
        except ZeroClickError:
            pass
    return bool(exam.rejected or exam.problems or any(s.problems or s.meta.get("value_notes") for s in exam.series))


# ------------------------------------------------------------------------------------------- single files


@settings(max_examples=N_FILE_CASES, **SEED_SETTINGS)
@given(data=st.data())
def test_fuzz_single_files_end_in_a_result_or_a_named_error(base, tmp_path, data):
    pool = data.draw(st.sampled_from(["series", "series", "other"]))  # a third: compressed, implicit, enhanced
    raw = data.draw(st.sampled_from(base[pool]))
    edits = data.draw(st.lists(mutation(), min_size=1, max_size=3))
    for _, edit in edits:
        raw = edit(raw)
    path = tmp_path / f"case{time.monotonic_ns()}.dcm"
    path.write_bytes(raw)
    outcome = _classify(lambda: _scan_and_decode([path]), "scan_file", SCAN_SECONDS)
    assert outcome != "hang", [name for name, _ in edits]


# ------------------------------------------------------------------------------------------- series


@st.composite
def series_damage(draw, n_files: int):
    """Series-level damage: file-level edits on some files plus missing/duplicated/conflicting files."""
    ops = []
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, n_files - 1))
        kind = draw(st.sampled_from(["edit", "remove", "copy", "conflict", "study", "orientation", "size", "gap"]))
        if kind == "edit":
            ops.append((kind, i, draw(mutation())[1]))
        else:
            ops.append((kind, i, draw(st.integers(0, n_files - 1))))
    return ops, draw(st.sampled_from(["folder", "folder", "zip", "broken_zip"]))


def _apply(files: list[bytes], ops) -> dict[str, bytes]:
    out = {f"im{i:04d}.dcm": b for i, b in enumerate(files)}
    o = sax_orientation()
    for kind, i, arg in ops:
        name = f"im{i:04d}.dcm"
        if name not in out:
            continue
        b = out[name]
        if kind == "edit":
            out[name] = arg(b)
        elif kind == "remove":
            del out[name]
        elif kind == "copy":
            out[f"copy{i:04d}.dcm"] = b
        elif kind == "conflict":  # another file's pixels under this file's SOP Instance UID
            other = files[arg]
            e = rawdicom.find(b, UID_TAGS["SOPInstanceUID"])
            if e is not None:
                out[f"conflict{i:04d}.dcm"] = rawdicom.set_value(other, UID_TAGS["SOPInstanceUID"],
                                                                 b[e.value_start: e.end].rstrip(b"\x00"), b"UI")
        elif kind == "study":
            out[name] = rawdicom.set_value(b, UID_TAGS["StudyInstanceUID"], uid(5, 99).encode(), b"UI")
        elif kind == "orientation":
            tilted = "\\".join(f"{v:.6f}" for v in (o[3], o[4], o[5], o[0], o[1], o[2]))
            out[name] = rawdicom.set_value(b, TAGS["ImageOrientationPatient"], tilted.encode(), b"DS")
        elif kind == "size":
            out[name] = rawdicom.set_us(rawdicom.set_us(b, US_TAGS["Rows"], 8), US_TAGS["Columns"], 32)
        elif kind == "gap":
            out[name] = rawdicom.set_value(b, TAGS["ImagePositionPatient"], b"500\\500\\500", b"DS")
    return out


@settings(max_examples=N_SERIES_CASES, **SEED_SETTINGS)
@given(data=st.data())
def test_fuzz_series_end_in_a_result_or_a_named_error(base, tmp_path, data):
    ops, container = data.draw(series_damage(len(base["series"])))
    case = tmp_path / f"case{time.monotonic_ns()}"
    case.mkdir()
    for name, b in _apply(base["series"], ops).items():
        (case / name).write_bytes(b)
    source: Path = case
    if container != "folder":
        source = case.with_suffix(".zip")
        with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(case.iterdir()):
                zf.write(f, f.name)
        if container == "broken_zip":
            source.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    outcome = _classify(lambda: _scan_and_decode(source), "scan_series", SCAN_SECONDS)
    assert outcome != "hang", [op[:2] for op in ops]


# ------------------------------------------------------------------------------------------- cardiac exams


@pytest.fixture(scope="module")
def cmr_base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz_cmr")
    write_exam(folder)
    return folder


@st.composite
def exam_damage(draw):
    """Edits of a whole cardiac exam: a header value in every file, or damage to a few cine/LGE files."""
    ops = []
    if draw(st.booleans()):
        name = draw(st.sampled_from(["PatientSize", "PatientWeight", "HeartRate", "NominalInterval",
                                     "SliceThickness", "TriggerTime", "RescaleSlope"]))
        ops.append(("all", name, draw(numbers)))
    for _ in range(draw(st.integers(0 if ops else 1, 3))):
        role = draw(st.sampled_from(["cine", "lge"]))
        i = draw(st.integers(0, 47 if role == "cine" else 5))
        kind = draw(st.sampled_from(["edit", "remove", "conflict", "orientation", "gap"]))
        ops.append((kind, f"{role}/im{i + 1:04d}.dcm", draw(mutation())[1] if kind == "edit" else
                    draw(st.integers(1, 48 if role == "cine" else 6))))
    return ops


def _damage_exam(folder: Path, ops) -> None:
    o = sax_orientation()
    for kind, name, arg in ops:
        if kind == "all":
            for f in sorted(folder.rglob("*.dcm")):
                f.write_bytes(rawdicom.set_value(f.read_bytes(), TAGS[name], arg, b"IS" if name == "HeartRate"
                                                 else b"DS"))
            continue
        f = folder / name
        if not f.exists():
            continue
        b = f.read_bytes()
        if kind == "edit":
            f.write_bytes(arg(b))
        elif kind == "remove":
            f.unlink()
        elif kind == "conflict":
            other = f.parent / f"im{arg:04d}.dcm"
            e = rawdicom.find(b, UID_TAGS["SOPInstanceUID"])
            if other.exists() and e is not None:
                (f.parent / f"x{name.split('/')[-1]}").write_bytes(rawdicom.set_value(
                    other.read_bytes(), UID_TAGS["SOPInstanceUID"], b[e.value_start: e.end].rstrip(b"\x00"), b"UI"))
        elif kind == "orientation":
            tilted = "\\".join(f"{v:.6f}" for v in (o[3], o[4], o[5], o[0], o[1], o[2]))
            f.write_bytes(rawdicom.set_value(b, TAGS["ImageOrientationPatient"], tilted.encode(), b"DS"))
        elif kind == "gap":
            f.write_bytes(rawdicom.set_value(b, TAGS["ImagePositionPatient"], b"500\\500\\500", b"DS"))


@settings(max_examples=N_CMR_CASES, **SEED_SETTINGS)
@given(data=st.data())
def test_fuzz_cardiac_run_ends_in_a_result_or_a_named_error(cmr_base, tmp_path, data):
    from zeroclick.pipelines.cardiac import run

    ops = data.draw(exam_damage())
    case = tmp_path / f"exam{time.monotonic_ns()}"
    shutil.copytree(cmr_base, case)
    _damage_exam(case, ops)

    def analyse() -> bool:
        r = run(case, cine_segmenter=LutSegmenter(4), lge_segmenter=LutSegmenter(5), device="cpu")
        json.dumps(r.to_dict(), allow_nan=False)  # report.json must stay writable
        return bool(r.warnings or any(q.severity != "info" for q in r.qc))

    outcome = _classify(analyse, "cmr_run", CMR_SECONDS)
    assert outcome != "hang", [op[:2] for op in ops]


@pytest.fixture
def lut_network(monkeypatch):
    import zeroclick.pipelines.cardiac.segmentation as segmentation

    monkeypatch.setattr(segmentation, "CineSegmenter", lambda *a, **k: LutSegmenter(4))
    monkeypatch.setattr(segmentation, "LgeSegmenter", lambda *a, **k: LutSegmenter(5))


CLI_CASES = [
    [("all", "PatientSize", b"1,58")],
    [("all", "PatientWeight", "72".encode("utf-16"))],
    [("all", "TriggerTime", b"nan")],
    [("gap", "cine/im0017.dcm", 1)],
    [("orientation", "cine/im0005.dcm", 1)],
    [("edit", "cine/im0003.dcm", lambda b: b[: len(b) // 2])],
    [("all", "SliceThickness", b"--5"), ("conflict", "cine/im0020.dcm", 21)],
]


@pytest.mark.parametrize("ops", CLI_CASES, ids=[str(i) for i in range(len(CLI_CASES))])
def test_fuzz_cmr_command_line_exits_with_a_documented_code(cmr_base, tmp_path, run_cli, lut_network, ops):
    """The real ``zeroclick cmr`` path (stand-in network): exit 0/3/4 with a report.json, never a traceback."""
    case = tmp_path / "exam"
    shutil.copytree(cmr_base, case)
    _damage_exam(case, ops)
    with time_bound(CMR_SECONDS):
        code, _, err = run_cli("cmr", str(case), "--out", str(tmp_path / "out"), "--device", "cpu")
    assert code in (0, 3, 4), err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    noted = report.get("warnings") or any(q["severity"] != "info" for q in report.get("qc", []))
    record("cmr_cli", "named_error" if code == 3 else "warning" if code == 4 or noted else "clean")
    assert report["status"] in ("ok", "partial", "failed")
    if code == 3:
        assert report["failure_reason"] and report["failure_code"]
