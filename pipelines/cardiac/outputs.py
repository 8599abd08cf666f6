"""Write a :class:`CardiacResult` to a folder: report.json, measurements.csv, NIfTI masks, run.json.

Every file is written atomically (temporary name in the same folder, fsync, rename), so a crash never leaves a
half-written report that looks complete.

* ``report.json``: ``CardiacResult.to_dict()``; its top-level ``measurements`` has the keys of
  ``reference.json``'s ``model_reference`` blocks (``lv_edv_ml`` ... ``infarct_percent_of_myocardium``).
* ``measurements.csv``: ``name,value,unit`` for every measurement and AHA segment value.
* ``masks/*.nii.gz``: label masks (NIfTI orientation as in docs/conventions.md, the inverse of the reader).
* ``run.json``: provenance (versions, weights id + SHA-256, device, per-stage seconds, phase choice).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from zeroclick.imaging.volume import Volume
from zeroclick.pipelines.cardiac.result import CardiacResult, _plain

_PERM = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
_UNITS = (("_ml_per_m2", "mL/m2"), ("_g_per_m2", "g/m2"), ("_l_per_min_per_m2", "L/min/m2"),
          ("_l_per_min", "L/min"), ("_ml", "mL"), ("_g", "g"), ("_percent", "%"), ("_mm", "mm"),
          ("_bpm", "1/min"), ("_m2", "m2"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def unit_of(name: str) -> str:
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            return unit
    return ""


def measurement_rows(result: CardiacResult) -> list[tuple[str, Any, str]]:
    rows = [(k, v, unit_of(k)) for k, v in result.measurements.items()]
    if result.aha is not None:
        for s in result.aha.segments:
            for name in ("ed_thickness_mm", "es_thickness_mm", "thickening_percent", "transmurality_percent"):
                rows.append((f"aha_{s.segment}_{name}", getattr(s, name), unit_of(name)))
    if result.lge is not None:
        for scar in result.lge.classical:
            rows.append((f"infarct_{scar.method}_percent_of_myocardium", scar.infarct_percent_of_myocardium, "%"))
    return rows


def measurements_csv(result: CardiacResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("name", "value", "unit"))
    for name, value, unit in measurement_rows(result):
        value = _plain(value)
        w.writerow((name, "" if value is None else (f"{value:.6g}" if isinstance(value, float) else value), unit))
    return buf.getvalue()


def nifti_bytes(volume: Volume) -> bytes:
    """Label Volume -> gzipped NIfTI bytes (``data[x, y, z] = array[z, y, x]``)."""
    import nibabel as nib

    arr = np.asarray(volume.array)
    data = arr.transpose(2, 1, 0) if arr.ndim == 3 else arr.transpose(3, 2, 1, 0)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.affine @ _PERM
    img = nib.Nifti1Image(np.ascontiguousarray(data.astype(np.uint8)), affine)
    s = volume.spacing_mm
    img.header.set_zooms((s[2], s[1], s[0]) + ((1.0,) if arr.ndim == 4 else ()))
    return _gzip(img.to_bytes())


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, compresslevel=1, mtime=0)


def write_outputs(result: CardiacResult, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write every output file of ``result`` into ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in (f.name for f in dataclasses.fields(result.masks)):
        vol = getattr(result.masks, name)
        if vol is not None:
            p = out / "masks" / f"{name}_labels.nii.gz"
            atomic_write_bytes(p, nifti_bytes(vol))
            written.append(p)
    p = out / "measurements.csv"
    atomic_write_bytes(p, measurements_csv(result).encode())
    written.append(p)
    p = out / "run.json"
    atomic_write_json(p, {"status": result.status, "provenance": _plain(result.provenance),
                          "phases": _plain(result.phases), "series": _plain(result.series)})
    written.append(p)
    p = out / "report.json"  # last: its presence means the rest is complete
    atomic_write_json(p, result.to_dict())
    written.append(p)
    return written


def write_failure(out_dir: str | os.PathLike[str], source: str, reason: str, *, code: str = "error") -> Path:
    """A report.json for a run that produced nothing valid (status ``failed``, the reason and its ``failure_code``,
    e.g. ``mixed_patients``, ``resource_limit``: :attr:`zeroclick.imaging.errors.ZeroClickError.code`)."""
    p = Path(out_dir) / "report.json"
    atomic_write_json(p, {"status": "failed", "failure_reason": reason, "failure_code": code, "source": source,
                          "measurements": {}})
    return p
