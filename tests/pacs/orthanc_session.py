"""Drive one real Orthanc for a test, from INSIDE a private network namespace (run via ``unshare -n``).

Starts Orthanc with a throwaway configuration (loopback, AE whitelist, small StableAge, the zeroclick
plugin), pushes a folder with dcmtk ``storescu`` (TCP_NODELAY=1 on both ends), waits for the zeroclick
results to appear in the same study, downloads them and writes a JSON summary. The test asserts on it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HTTP_PORT, DICOM_PORT = 8042, 4242


def http(path: str, data: bytes | None = None):
    req = urllib.request.Request(f"http://127.0.0.1:{HTTP_PORT}{path}", data=data,
                                 method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body[:1] in (b"{", b"[") else body


def storescu(folder: Path, aet: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TCP_NODELAY="1")
    from zc_listener_helpers import dcmtk

    return subprocess.run([dcmtk("storescu") or "storescu", "-aet", aet, "-aec", "ORTHANC", "+sd", "+r", "-xs",
                           "127.0.0.1", str(DICOM_PORT), str(folder)], capture_output=True, text=True,
                          env=env, timeout=60)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--push", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--pythonpath", default="")
    ap.add_argument("--analysis", default="")
    ap.add_argument("--expect", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=45)
    args = ap.parse_args()
    work = Path(args.work)
    (work / "results").mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "zeroclick-test", "StorageDirectory": str(work / "storage"), "IndexDirectory": str(work / "index"),
        "HttpPort": HTTP_PORT, "DicomPort": DICOM_PORT, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "StableAge": 1, "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": False, "DicomCheckModalityHost": True,
        "DicomModalities": {"zeroclick": ["ZCSENDER", "127.0.0.1", 11112]},
        "Plugins": ["/usr/share/orthanc/plugins/libOrthancPython.so"], "PythonScript": args.plugin,
        "PythonVerbose": False, "HttpThreadsCount": 4, "ConcurrentJobs": 1, "SaveJobs": False,
        "ZeroClick": {"Python": args.python, "WorkDir": str(work / "plugin"), "Analysis": args.analysis,
                      "PythonPath": args.pythonpath, "TimeoutSeconds": 120},
    }
    (work / "orthanc.json").write_text(json.dumps(config))
    log = open(work / "orthanc.log", "w")
    orthanc = subprocess.Popen(["Orthanc", str(work / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                               env=dict(os.environ, TCP_NODELAY="1"))
    summary: dict = {}
    try:
        for _ in range(200):
            try:
                http("/system")
                break
            except OSError:
                time.sleep(0.05)
        rejected = storescu(Path(args.push), "INTRUDER")
        summary["unknown_aet_rc"] = rejected.returncode
        summary["studies_after_unknown_aet"] = len(http("/studies"))
        t_push0 = time.time()
        pushed = storescu(Path(args.push), "ZCSENDER")
        t_pushed = time.time()
        summary.update(push_rc=pushed.returncode, push_s=t_pushed - t_push0, push_stderr=pushed.stderr[-500:])
        studies = http("/studies")
        summary["n_studies"] = len(studies)
        deadline = t_pushed + args.timeout
        ours: list[dict] = []
        while time.time() < deadline:
            ours = [s for s in http(f"/studies/{studies[0]}/series") if
                    s["MainDicomTags"].get("Manufacturer") == "zeroclick"] if studies else []
            if len(ours) >= args.expect:
                break
            time.sleep(0.1)
        t_done = time.time()
        summary["results_after_last_image_s"] = t_done - t_pushed
        summary["n_result_series"] = len(ours)
        summary["n_studies_after"] = len(http("/studies"))
        for s in ours:
            for iid in s["Instances"]:
                (work / "results" / f"{iid}.dcm").write_bytes(http(f"/instances/{iid}/file"))
        timings = work / "plugin" / "timings.jsonl"
        summary["plugin_timings"] = [json.loads(x) for x in timings.read_text().splitlines()] if timings.exists() else []
        # a second stability (our own results) must not trigger a second analysis
        time.sleep(2.0)
        summary["plugin_runs_after_wait"] = (len(timings.read_text().splitlines()) if timings.exists() else 0)
    finally:
        orthanc.terminate()
        try:
            orthanc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            orthanc.kill()
        log.close()
        (work / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
