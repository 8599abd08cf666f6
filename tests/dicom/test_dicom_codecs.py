"""Pixel data in every supported transfer syntax decodes to the same pixels pydicom gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dicom_factory
import numpy as np
import pydicom
import pytest
from pydicom import uid as u

from zeroclick.imaging.dicom import scan

SYNTAXES = [u.ExplicitVRLittleEndian, u.ImplicitVRLittleEndian, u.DeflatedExplicitVRLittleEndian, u.RLELossless,
            u.JPEGLSLossless, u.JPEG2000Lossless, u.JPEGLosslessSV1, u.JPEGBaseline8Bit]
LOSSLESS = set(SYNTAXES) - {u.JPEGBaseline8Bit}


def _series(folder: Path, ts: str, n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    pixels = []
    for k in range(n):
        img = rng.integers(0, 4000 if ts != u.JPEGBaseline8Bit else 250, (64, 64)).astype(np.uint16)
        img[10:30, 10:30] = 100 * (k + 1)
        pixels.append(img)
        dicom_factory.write_mr(folder / f"im{k}.dcm", study="1.2.3", series="1.2.3.4", sop=f"1.2.3.4.{k + 1}",
                               series_number=1, position=(0.0, 0.0, 8.0 * k), orientation=(1, 0, 0, 0, 1, 0),
                               rows=64, cols=64, instance_number=k + 1, pixels=img, transfer_syntax=ts,
                               inversion_time=300.0, scanning_sequence=["GR", "IR"], slope=2.0, intercept=-5.0)
    return pixels


@pytest.mark.parametrize("ts", SYNTAXES, ids=lambda t: u.UID(t).keyword or t)
def test_transfer_syntax_decodes(tmp_path, ts):
    pixels = _series(tmp_path, ts)
    exam = scan(tmp_path, strictness="raise")
    (series,) = exam.series
    assert series.transfer_syntax_uid == ts
    vol = series.volume()
    assert vol.array.shape == (3, 64, 64)
    for k, path in enumerate(series.paths):
        ref = pydicom.dcmread(path).pixel_array.astype(np.float32) * 2.0 - 5.0
        np.testing.assert_array_equal(vol.array[k], ref)
        if ts in LOSSLESS:
            np.testing.assert_array_equal(vol.array[k], pixels[k].astype(np.float32) * 2.0 - 5.0)


def test_missing_codec_names_the_package(tmp_path):
    _series(tmp_path, u.JPEGLSLossless, n=1)
    code = f"""
import sys
for name in ("libjpeg", "pylibjpeg", "gdcm", "pyjpegls", "jpeg_ls"):
    sys.modules[name] = None   # as if the plugins were not installed
from zeroclick.imaging.dicom import scan
from zeroclick.imaging.errors import MissingCodecError
series = scan({str(tmp_path)!r}).series[0]
try:
    series.volume()
except MissingCodecError as exc:
    print("MISSING:", exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "MISSING:" in out.stdout, out.stderr[-2000:]
    assert "pylibjpeg-libjpeg" in out.stdout and "1.2.840.10008.1.2.4.80" in out.stdout
