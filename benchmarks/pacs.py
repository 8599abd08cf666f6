"""``zeroclick bench pacs``: reception speed of ``zeroclick listen`` and seconds from last image to results sent.

A generated exam (zeroclick.imaging.synthetic.cmr) is pushed by C-STORE (pynetdicom, one association, TCP_NODELAY)
to an in-process :class:`zeroclick.pipelines.pacs.listener.Listener` on loopback, which analyses the study once it is
stable and sends SEG/SR/PDF to an in-process Storage SCP standing for the PACS.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

DESCRIPTION = "zeroclick listen: reception images/s and end-to-end seconds from last image to results sent"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=600, help="images in the generated exam (default 600)")
    parser.add_argument("--stable-seconds", type=float, default=2.0, help="listener stable-study delay")
    parser.add_argument("--analysis", default="",
                        help="module:function (default: the real cardiac pipeline with its networks, as in "
                             "production); 'truth' = a STAND-IN: the same pipeline with the generator's truth masks "
                             "in place of the networks (times transport, spool, queue, quantification and DICOM "
                             "writers without inference; labelled analysis_kind='stand-in' in the output)")
    parser.add_argument("--allocator", choices=("auto", "jemalloc", "system"), default="auto",
                        help="allocator of the listener's analysis workers, as `zeroclick listen` sets it (default "
                             "auto: jemalloc for ONNX Runtime/PyTorch, the system allocator where OpenVINO runs)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--destination", metavar="AET@HOST:PORT",
                        help="send the results to this real PACS (e.g. Orthanc; it must accept C-STOREs from AE "
                             "ZEROCLICK) instead of an in-process Storage SCP; the end is when the PACS has "
                             "acknowledged every result (the job is 'sent')")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--instance-mb", type=float, default=0.0,
                        help="instead: send ONE instance of this size to a listener process and report its memory "
                             "(VmRSS before, VmHWM after; issue 18 measured 315 MB -> 1.32 GB for 288 MB)")
    parser.add_argument("--listener-module", default="zeroclick.pipelines.pacs.listener",
                        help="with --instance-mb: module providing Listener/ListenerConfig (to measure another version)")
    parser.add_argument("--listener-path", default="", help="with --instance-mb: folder prepended to sys.path")


TRUTH_ENV = "ZC_BENCH_TRUTH_DIR"


class _TruthSegmenter:
    """Stands in for a network: returns the generator's truth labels of the phase it is shown."""

    def __init__(self, images, labels) -> None:
        self.images, self.labels = images, labels
        self.provenance = {"weights_id": "ground-truth", "weights_sha256": "0" * 64, "device": "cpu"}

    def segment(self, volume, slices=None):
        import numpy as np

        arr = getattr(volume, "array", volume)
        if self.labels.ndim == 3:
            out = self.labels.copy()
        else:
            phase = next(p for p in range(self.images.array.shape[0]) if np.array_equal(self.images.array[p], arr))
            out = self.labels[phase].copy()
        if slices is not None:
            keep = np.zeros(out.shape[0], bool)
            keep[list(slices)] = True
            out[~keep] = 0
        return out


def truth_analysis(in_dir: Path, out_dir: Path) -> list[Path]:
    """The cardiac pipeline on the received study with the generator's truth masks (``$ZC_BENCH_TRUTH_DIR``)."""
    import os

    import numpy as np

    from zeroclick.imaging.synthetic.cmr import load_truth
    from zeroclick.pipelines.cardiac import run as run_cardiac
    from zeroclick.pipelines.cardiac.inputs import load_case
    from zeroclick.pipelines.cardiac.report import write_dicom_outputs

    truth = load_truth(os.environ[TRUTH_ENV])
    case = load_case(in_dir)
    result = run_cardiac(case, cine_segmenter=_TruthSegmenter(case.cine, truth["cine_sax"].array.astype(np.uint8)),
                         lge_segmenter=_TruthSegmenter(case.lge, truth["lge"].array.astype(np.uint8)))
    return write_dicom_outputs(result, out_dir, source=in_dir)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_MEMORY_CHILD = """
import importlib, sys
from pathlib import Path
if sys.argv[1]:
    sys.path.insert(0, sys.argv[1])
mod = importlib.import_module(sys.argv[2])
cfg = mod.ListenerConfig(spool_dir=Path(sys.argv[3]), port=int(sys.argv[4]), min_free_bytes=0, stable_s=3600.0)
mod.Listener(cfg).serve_forever()
"""


def _proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def run_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Memory of a listener process that receives one ``--instance-mb`` instance (loopback, one C-STORE)."""
    import subprocess
    import sys

    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
    from pynetdicom import AE, evt

    from zeroclick.pipelines.pacs.send import set_tcp_nodelay

    side = int(np.sqrt(args.instance_mb * 1e6 / 2))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.Modality, ds.PatientID = "OT", "BENCH"
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.random.default_rng(0).integers(0, 4096, (side, side), dtype=np.uint16).tobytes()
    with tempfile.TemporaryDirectory(prefix="zc-bench-mem-") as tmp:
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-c", _MEMORY_CHILD, args.listener_path, args.listener_module,
                                 str(Path(tmp) / "spool"), str(port)], stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.2)
            time.sleep(1.0)
            rss_before = _proc_kib(proc.pid, "VmRSS")
            scu = AE(ae_title="BENCHSCU")
            scu.acse_timeout = scu.dimse_timeout = scu.network_timeout = 300
            scu.add_requested_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
            t0 = time.time()
            assoc = scu.associate("127.0.0.1", port, ae_title="ZEROCLICK",
                                  evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)])
            status = assoc.send_c_store(ds) if assoc.is_established else None
            if assoc.is_established:
                assoc.release()
            seconds = time.time() - t0
            time.sleep(1.0)
            peak, after = _proc_kib(proc.pid, "VmHWM"), _proc_kib(proc.pid, "VmRSS")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {
        "instance_bytes": len(ds.PixelData),
        "listener": args.listener_module,
        "status": f"0x{int(status.Status):04X}" if status else None,
        "store_s": seconds,
        "rss_before_mb": rss_before / 1024,
        "rss_peak_mb": peak / 1024,
        "rss_after_mb": after / 1024,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.instance_mb:
        return run_memory(args)
    import pydicom
    from pydicom.uid import AllTransferSyntaxes
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    from zeroclick.imaging.synthetic.cmr import generate_exam
    from zeroclick.pipelines.pacs.listener import Listener, ListenerConfig
    from zeroclick.pipelines.pacs.send import set_tcp_nodelay

    received: list[float] = []
    lock = threading.Lock()

    def on_store(event) -> int:
        with lock:
            received.append(time.time())
        return 0

    with tempfile.TemporaryDirectory(prefix="zc-bench-pacs-") as tmp:
        root = Path(tmp)
        generate_exam(root / "exam", n_images=args.images, seed=args.seed)
        from zeroclick.pipelines.pacs.config import worker_env, worker_runtime_allocator

        analysis = args.analysis or None
        extra_env = worker_env(args.allocator)  # the service path: jemalloc only for ONNX Runtime/PyTorch workers
        if analysis == "truth":
            analysis = "zeroclick.benchmarks.pacs:truth_analysis"
            extra_env[TRUTH_ENV] = str(root / "exam")
        files = sorted(p for p in (root / "exam" / "dicom").rglob("*") if p.is_file())
        datasets = [pydicom.dcmread(p) for p in files]  # decoded before timing: we time the network + spool

        dest = None
        destination = args.destination
        if not destination:
            dest_ae = AE(ae_title="BENCHPACS")
            for cx in AllStoragePresentationContexts:
                dest_ae.add_supported_context(str(cx.abstract_syntax), AllTransferSyntaxes)
            dest_port = _free_port()
            dest = dest_ae.start_server(("127.0.0.1", dest_port), block=False,
                                        evt_handlers=[(evt.EVT_C_STORE, on_store),
                                                      (evt.EVT_CONN_OPEN, set_tcp_nodelay)])
            destination = f"BENCHPACS@127.0.0.1:{dest_port}"
        listener = Listener(ListenerConfig(
            spool_dir=root / "spool", port=_free_port(), allowed_aets=("BENCHSCU",),
            destination=destination, stable_s=args.stable_seconds,
            analysis=analysis, min_free_bytes=0, poll_s=0.05, extra_env=extra_env))
        listener.start()
        try:
            scu = AE(ae_title="BENCHSCU")
            for sop in sorted({str(ds.SOPClassUID) for ds in datasets}):
                scu.add_requested_context(sop, sorted({str(ds.file_meta.TransferSyntaxUID) for ds in datasets}))
            t0 = time.time()
            assoc = scu.associate("127.0.0.1", listener.port, ae_title="ZEROCLICK",
                                  evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)])
            ok = sum(1 for ds in datasets if int(assoc.send_c_store(ds).Status) == 0)
            assoc.release()
            t_last = time.time()
            deadline = t_last + args.timeout
            while time.time() < deadline:  # until the job's results are all stored (or it ended otherwise)
                done = listener.spool._tx("SELECT 1 FROM jobs WHERE state IN ('sent', 'failed', 'send_failed')")
                if done and not listener.spool._tx("SELECT 1 FROM jobs WHERE state IN ('queued', 'running', "
                                                   "'analysed')"):
                    break
                time.sleep(0.05)
            jobs = listener.spool._tx("SELECT started, finished, sent_at, state, outputs FROM jobs ORDER BY id")
        finally:
            listener.stop()
            if dest is not None:
                dest.shutdown()
    job = jobs[-1] if jobs else (None, None, None, "none", None)
    if args.destination:  # the real PACS acknowledged every result when the job became 'sent'
        received = [float(job[2])] * len(json.loads(job[4] or "[]")) if job[3] == "sent" and job[2] else []
    t_results = max(received) if received else None
    return {
        "images": len(datasets),
        "images_stored": ok,
        "reception_s": t_last - t0,
        "reception_images_per_s": len(datasets) / (t_last - t0),
        "stable_seconds": args.stable_seconds,
        "results_received": len(received),
        "last_image_to_results_sent_s": (t_results - t_last) if t_results else None,
        "analysis_s": (job[1] - job[0]) if job[0] and job[1] else None,
        "job_state": job[3],
        "destination": args.destination or "in-process pynetdicom Storage SCP",
        "analysis": analysis or "zeroclick.pipelines.pacs.analysis:cardiac_analysis",
        "analysis_kind": "stand-in (truth masks, no network)" if args.analysis == "truth" else
        ("real networks" if not args.analysis else "custom"),
        "worker_allocator": worker_runtime_allocator(args.allocator),
        "load_average_1_5_15": list(os.getloadavg()),
    }
