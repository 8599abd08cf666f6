"""Helpers shared by the listener tests: free ports, waiting, pushing files, a recording destination SCP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt

from zeroclick.pipelines.pacs.send import set_tcp_nodelay


def dcmtk(name: str) -> str | None:
    """Path of dcmtk's ``name`` (storescu, echoscu, ...) on PATH, skipping same-named scripts: pynetdicom 3 installs
    its own storescu/echoscu/findscu, with other options, into the bin folder of an activated venv."""
    for folder in os.get_exec_path():
        exe = os.path.join(folder, name)
        if os.path.isfile(exe) and os.access(exe, os.X_OK):
            with open(exe, "rb") as fh:
                if fh.read(2) != b"#!":
                    return exe
    return None

REPO = Path(__file__).resolve().parents[2]
PYTHONPATH = os.pathsep.join([str(REPO), str(REPO / "tests" / "pacs"), str(REPO / "tests" / "dicom_write")])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout_s: float, what: str, detail=lambda: "") -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{detail()}")


def push_datasets(datasets, port: int, *, aet: str = "MODALITY", timeout_s: float = 90, tls=None):
    """C-STORE data sets one by one on one association; the statuses (None where the association broke),
    or None when the association was not established."""
    ae = AE(ae_title=aet)
    ae.dimse_timeout = ae.network_timeout = ae.acse_timeout = timeout_s
    for c in {str(ds.SOPClassUID) for ds in datasets}:
        ae.add_requested_context(c)
    assoc = ae.associate("127.0.0.1", port, ae_title="ZEROCLICK", evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)],
                         tls_args=(tls, "127.0.0.1") if tls is not None else None)
    if not assoc.is_established:
        return None
    statuses = []
    try:
        for ds in datasets:
            st = assoc.send_c_store(ds) if assoc.is_established else None
            statuses.append(int(st.Status) if st else None)
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def push(paths, port: int, **kwargs):
    return push_datasets([pydicom.dcmread(p) for p in paths], port, **kwargs)


class RecordingScp:
    """A Storage SCP standing for the hospital PACS; keeps every data set it receives."""

    def __init__(self) -> None:
        self.received: list[pydicom.Dataset] = []
        self._lock = threading.Lock()
        from pydicom.uid import AllTransferSyntaxes

        ae = AE(ae_title="DEST")
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, AllTransferSyntaxes)
        self.port = free_port()
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._on_store),
                                                    (evt.EVT_CONN_OPEN, set_tcp_nodelay)])
        self.address = f"DEST@127.0.0.1:{self.port}"

    def _on_store(self, event):
        ds = event.dataset
        with self._lock:
            self.received.append(ds)
        return 0x0000

    def close(self) -> None:
        self.server.shutdown()


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (skips when openssl is missing)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a throwaway certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class ListenerProcess:
    """``zeroclick listen`` as a separate process (so that it can be killed with SIGKILL)."""

    def __init__(self, spool: Path, port: int, dest: str, env: dict[str, str], *,
                 analysis: str = "zc_threshold_analysis:analyse_slow", completeness: str = "geometry",
                 stable_s: float = 2.0, extra: tuple[str, ...] = ()):
        self.args = [sys.executable, "-m", "zeroclick.pipelines.pacs.listener", "--spool", str(spool), "--port",
                     str(port), "--allow", "MODALITY", "--send", dest, "--stable-seconds", str(stable_s),
                     "--min-free-gb", "0", "--completeness", completeness, "--analysis", analysis, *extra]
        self.env = dict(os.environ, PYTHONPATH=PYTHONPATH, **env)
        self.port, self.spool, self.proc = port, spool, None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.spool.parent / "listener.log", "a"))
        wait_for(self._accepting, 20, "the listener to accept connections")

    def _accepting(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def log(self) -> str:
        return (self.spool.parent / "listener.log").read_text()[-4000:]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def status(self) -> dict:
        """The queue as ``zeroclick listen --status`` prints it."""
        out = subprocess.run([sys.executable, "-m", "zeroclick.pipelines.pacs.listener", "--spool", str(self.spool),
                              "--status"], capture_output=True, text=True, env=self.env, timeout=30)
        return json.loads(out.stdout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
