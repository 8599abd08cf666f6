"""Orthanc Python-plugin script: when a study becomes stable, analyse it and store the results into it.

Install (Debian: ``orthanc`` + ``orthanc-python``), then in the Orthanc configuration::

    "Plugins": ["/usr/share/orthanc/plugins/libOrthancPython.so"],
    "PythonScript": "/path/to/zeroclick/pipelines/pacs/orthanc_plugin.py",
    "StableAge": 5,
    "ZeroClick": {
        "Python": "/path/to/venv/bin/python",    // interpreter that has zeroclick installed
        "WorkDir": "/var/lib/orthanc/zeroclick", // temporary study copies + timings.jsonl + state.json
        "Analysis": "",                          // module:function; default the cardiac pipeline
        "PythonPath": "",                        // extra PYTHONPATH for the analysis process
        "TimeoutSeconds": 900
    }

What happens on ``STABLE_STUDY``: a worker thread (never Orthanc's change thread) lists the study's
series, ignores the ones zeroclick wrote (Manufacturer ``zeroclick``), and skips the study when those
source instances were already analysed (``state.json``; our own results arriving make the study stable
again). It then copies the source files to ``WorkDir``, runs ``python -m zeroclick.pipelines.pacs.analysis`` in a
separate process (a crash there cannot take Orthanc down), POSTs every output file to ``/instances`` -
they carry the study's UIDs so they land in the same study - and appends one line of timings to
``WorkDir/timings.jsonl``. Logs name studies by Orthanc's opaque ID only, never by patient attributes.

No path is built from received data: job folders and copied files are named by Orthanc's own IDs, and only
after they match Orthanc's ID format (five groups of 8 hexadecimal digits); every output the analysis reports
must lie inside the job's ``out`` folder before it is uploaded.

This file runs inside Orthanc's embedded Python: it imports only the standard library and ``orthanc``.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import orthanc  # type: ignore[import-not-found]  # provided by Orthanc's Python plugin

OUR_MANUFACTURER = "zeroclick"

_config = json.loads(orthanc.GetConfiguration()).get("ZeroClick", {})
PYTHON = _config.get("Python", "python3")
WORK_DIR = Path(_config.get("WorkDir", "/tmp/zeroclick-orthanc"))
ANALYSIS = _config.get("Analysis", "")
PYTHONPATH = _config.get("PythonPath", "")
TIMEOUT_S = float(_config.get("TimeoutSeconds", 900))

_ORTHANC_ID = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}")

_jobs: queue.Queue[tuple[str, float] | None] = queue.Queue()
_state_lock = threading.Lock()


def _get(uri: str):
    return json.loads(orthanc.RestApiGet(uri))


def _state_path() -> Path:
    return WORK_DIR / "state.json"


def _load_state() -> dict[str, str]:
    try:
        return json.loads(_state_path().read_text())
    except (OSError, ValueError):
        return {}


def _save_state(state: dict[str, str]) -> None:
    tmp = _state_path().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, _state_path())


def _source_instances(study_id: str) -> list[str]:
    """Orthanc IDs of the study's instances that zeroclick did not write."""
    ids: list[str] = []
    for series in _get(f"/studies/{study_id}/series"):
        if series.get("MainDicomTags", {}).get("Manufacturer", "") == OUR_MANUFACTURER:
            continue
        ids.extend(series.get("Instances", []))
    return sorted(ids)


def _safe_id(value: str) -> str:
    """An Orthanc resource ID checked against its format before it names a file or folder."""
    if not isinstance(value, str) or not _ORTHANC_ID.fullmatch(value):
        raise ValueError("unexpected Orthanc ID format: refusing to build a path from it")
    return value


def _inside(root: Path, path: Path) -> Path:
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if base not in resolved.parents:
        raise ValueError("an analysis output lies outside its job folder: not uploaded")
    return resolved


def _append_timing(record: dict) -> None:
    with open(WORK_DIR / "timings.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _process(study_id: str, stable_at: float) -> None:
    instances = _source_instances(study_id)
    if not instances:
        return
    signature = hashlib.sha256("\n".join(instances).encode()).hexdigest()
    with _state_lock:
        if _load_state().get(study_id) == signature:
            return  # already analysed exactly these instances (our own results made it stable again)
    job_dir = WORK_DIR / f"job-{_safe_id(study_id)[:17]}-{int(time.time() * 1000)}"
    in_dir, out_dir = job_dir / "in", job_dir / "out"
    in_dir.mkdir(parents=True)
    record: dict = {"study": study_id, "n_inputs": len(instances), "stable_at": stable_at}
    try:
        t0 = time.time()
        for iid in instances:
            (in_dir / f"{_safe_id(iid)}.dcm").write_bytes(orthanc.RestApiGet(f"/instances/{iid}/file"))
        t1 = time.time()
        env = dict(os.environ)
        if PYTHONPATH:
            env["PYTHONPATH"] = PYTHONPATH + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [PYTHON, "-m", "zeroclick.pipelines.pacs.analysis", str(in_dir), str(out_dir)]
        if ANALYSIS:
            cmd += ["--analysis", ANALYSIS]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
        t2 = time.time()
        answer = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
        if proc.returncode != 0 or "outputs" not in answer:
            reason = answer.get("error") or proc.stderr.strip()[-500:]
            record.update(status="failed", reason=reason, download_s=t1 - t0, analysis_s=t2 - t1)
            orthanc.LogError(f"zeroclick: analysis of study {study_id} failed: {reason}")
            return
        stored = []
        for path in answer["outputs"]:
            reply = json.loads(orthanc.RestApiPost("/instances", _inside(out_dir, Path(path)).read_bytes()))
            stored.append(reply.get("ID", ""))
        t3 = time.time()
        record.update(status="ok", n_outputs=len(stored), download_s=t1 - t0, analysis_s=t2 - t1,
                      upload_s=t3 - t2, stored_at=t3, stable_to_stored_s=t3 - stable_at)
        with _state_lock:
            state = _load_state()
            state[study_id] = signature
            _save_state(state)
        orthanc.LogWarning(f"zeroclick: study {study_id}: {len(stored)} result objects stored "
                           f"({t3 - t0:.1f} s after stability)")
    except Exception as exc:  # noqa: BLE001 - a plugin thread must never die silently
        record.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
        orthanc.LogError(f"zeroclick: study {study_id}: {type(exc).__name__}: {exc}")
    finally:
        _append_timing(record)
        shutil.rmtree(job_dir, ignore_errors=True)


def _worker() -> None:
    while True:
        item = _jobs.get()
        if item is None:
            return
        try:
            _process(*item)
        except Exception as exc:  # noqa: BLE001 - the worker thread must survive a bad study
            orthanc.LogError(f"zeroclick: a study was skipped: {type(exc).__name__}: {exc}")


def OnChange(change_type, level, resource_id):  # noqa: N802 - name fixed by the Orthanc plugin API
    if change_type == orthanc.ChangeType.STABLE_STUDY:
        _jobs.put((resource_id, time.time()))
    elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
        _jobs.put(None)


WORK_DIR.mkdir(parents=True, exist_ok=True)
threading.Thread(target=_worker, name="zeroclick-worker", daemon=True).start()
orthanc.RegisterOnChangeCallback(OnChange)
orthanc.LogWarning("zeroclick: Orthanc plugin loaded")
