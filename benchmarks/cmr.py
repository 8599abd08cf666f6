"""``zeroclick bench cmr``: the zero-click cardiac pipeline on a generated exam vs the naive reference approach.

Ours: scan + classify the exam, decode only cine SAX and LGE, ED/ES search on a few slices, whole stack at
ED and ES, LGE, quantification, outputs. Naive (measured in the same run, same machine): every phase of every
cine slice plus the LGE through ONNX Runtime on the CPU, one fresh session per volume, slice batches of 8, the
same pre/post-processing, no phase search (``zeroclick.pipelines.cardiac.segmentation.naive_onnx_segment``).

``naive_total_s`` = our scan + decode + quantification + outputs seconds + the naive inference seconds, so
the ratio isolates the inference strategy and the runtime. By default every phase is run and timed
(``naive_mode: measured``); with ``--naive-volumes N`` only N cine phase volumes are run and the naive
inference time is extrapolated to all phases (``naive_mode`` says so).

Allocator, as in production: ONNX Runtime and PyTorch run under jemalloc (``LD_PRELOAD``, Debian
``libjemalloc2``; the benchmark re-runs itself in a child process with it), OpenVINO under the C library
allocator because OpenVINO 2026.4 aborts under the jemalloc preload. ``allocator`` and ``runtime_used`` in the
JSON say what ran; ``load_average`` is taken before and after. ``--repeats N`` runs ours and the naive
baseline N times, interleaved, and reports medians (``runs`` keeps every run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

DESCRIPTION = "cardiac pipeline on a generated exam: stage seconds, slices inferred, speedup vs naive ONNX Runtime"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=3000, help="images in the generated exam (default 3000)")
    parser.add_argument("--exam", metavar="DIR", help="use this generated exam (folder with dicom/) instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnxruntime", "openvino"),
                        help="network runtime of our pipeline (default auto: OpenVINO on the CPU where installed, "
                             "bf16 on CPUs with native bf16)")
    parser.add_argument("--naive-volumes", type=int, default=0, metavar="N",
                        help="run the naive baseline on N cine phases and extrapolate (default 0 = all phases, "
                             "measured)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--repeats", type=int, default=1, metavar="N",
                        help="run ours and the naive baseline N times, interleaved; medians are reported")
    parser.add_argument("--allocator", choices=("auto", "jemalloc", "system"), default="auto",
                        help="auto (as in production): jemalloc (LD_PRELOAD of Debian's libjemalloc2, re-run in a "
                             "child process) for ONNX Runtime and PyTorch, the C library allocator for OpenVINO, "
                             "which aborts under jemalloc; jemalloc/system: force one")
    parser.add_argument("--warmup", action="store_true",
                        help="run the pipeline once untimed first (CUDA context, cuDNN autotuning, page cache)")


def _exam_dir(args: argparse.Namespace, tmp: Path) -> tuple[Path, float | None]:
    if args.exam:
        exam = Path(args.exam)
        return (exam / "dicom" if (exam / "dicom").is_dir() else exam), None
    from zeroclick.imaging.synthetic.cmr import generate_exam

    t0 = time.perf_counter()
    generate_exam(tmp / "exam", n_images=args.images, seed=args.seed)
    return tmp / "exam" / "dicom", time.perf_counter() - t0


def naive_inference_s(cine, lge, *, n_volumes: int = 0) -> tuple[float, int, str]:
    """Seconds of the naive approach's inference, slices it sends, and ``measured``/``extrapolated...``."""
    from zeroclick.pipelines.cardiac.segmentation import naive_onnx_segment
    from zeroclick.weights.store import onnx_cache_path, resolve

    acdc = onnx_cache_path(resolve("acdc"))
    emidec = onnx_cache_path(resolve("emidec"))
    n_phases = cine.n_phases if cine is not None else 0
    run_phases = n_phases if n_volumes <= 0 else min(n_phases, n_volumes)
    t_cine = 0.0
    for p in range(run_phases):
        t0 = time.perf_counter()
        naive_onnx_segment(cine.phase(p), acdc, batch=8)
        t_cine += time.perf_counter() - t0
    t_lge = 0.0
    if lge is not None:
        t0 = time.perf_counter()
        naive_onnx_segment(lge, emidec, batch=8)
        t_lge = time.perf_counter() - t0
    slices = n_phases * (cine.spatial_shape[0] if cine is not None else 0) + (lge.spatial_shape[0] if lge else 0)
    if run_phases and run_phases < n_phases:
        return t_cine / run_phases * n_phases + t_lge, slices, f"extrapolated_from_{run_phases}_of_{n_phases}_phases"
    return t_cine + t_lge, slices, "measured"


def dice(a, b) -> float | None:
    """Dice coefficient of two boolean masks (``None`` when both are empty)."""
    import numpy as np

    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return None if total == 0 else round(2.0 * int(np.count_nonzero(a & b)) / total, 4)


def truth_dice(result, exam_dir: Path) -> dict[str, Any]:
    """Dice of the network's masks against the generator's truth labels (ED, ES, LGE)."""
    import numpy as np

    from zeroclick.imaging.synthetic.cmr import load_truth

    truth = load_truth(exam_dir)
    out: dict[str, Any] = {}
    cine = truth.get("cine_sax")
    if cine is not None and result.masks.cine_ed is not None:
        for name, phase, mask in (("ed", result.phases.ed_phase, result.masks.cine_ed),
                                  ("es", result.phases.es_phase, result.masks.cine_es)):
            t = np.asarray(cine.array[phase])
            out[name] = {label: dice(mask.array == v, t == v) for label, v in (("rv", 1), ("myo", 2), ("lv", 3))}
    lge = truth.get("lge")
    if lge is not None and result.masks.lge is not None:
        m, t = result.masks.lge.array, np.asarray(lge.array)
        out["lge"] = {"myocardium": dice(m >= 2, t >= 2), "infarct": dice(m >= 3, t >= 3)}
    return out


JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1,retain:true"


def planned_runtime(args: argparse.Namespace) -> str:
    """The runtime our pipeline's networks will use (``openvino``, ``onnxruntime`` or ``torch``), before any
    network is loaded, for the allocator choice."""
    from zeroclick.imaging.engine import select_device
    from zeroclick.imaging.onnx_runtime import onnxruntime_available
    from zeroclick.imaging.openvino_runtime import openvino_available

    if select_device(args.device).type != "cpu":
        return "torch"
    if args.runtime != "auto":
        return str(args.runtime)
    if openvino_available():
        return "openvino"
    return "onnxruntime" if onnxruntime_available() else "torch"


def wanted_allocator(args: argparse.Namespace) -> str:
    """``jemalloc`` or ``system`` for this run (see ``--allocator``)."""
    if args.allocator != "auto":
        return str(args.allocator)
    if planned_runtime(args) == "openvino" or not os.path.exists(JEMALLOC):
        return "system"
    return "jemalloc"


def _in_child(args: argparse.Namespace, allocator: str) -> dict[str, Any]:
    """Run this benchmark again in a child process with (or without) jemalloc preloaded; returns its record."""
    import json
    import subprocess
    import sys

    argv = [sys.executable, "-m", "zeroclick.pipelines.cli", "bench", "cmr", "--json", "--allocator", allocator,
            "--images", str(args.images), "--seed", str(args.seed), "--device", str(args.device),
            "--runtime", str(args.runtime), "--naive-volumes", str(args.naive_volumes),
            "--repeats", str(args.repeats)]
    argv += ["--exam", str(args.exam)] if args.exam else []
    argv += ["--no-naive"] if args.no_naive else []
    argv += ["--warmup"] if args.warmup else []
    env = dict(os.environ, ZEROCLICK_BENCH_CHILD="1")
    preload = [p for p in env.get("LD_PRELOAD", "").split(":") if p and "jemalloc" not in p]
    if allocator == "jemalloc":
        preload.append(JEMALLOC)
        env["MALLOC_CONF"] = JEMALLOC_CONF
    env["LD_PRELOAD"] = ":".join(preload)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark with allocator {allocator} failed ({done.returncode}): {done.stderr[-2000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: v for k, v in record.items() if k not in ("benchmark", "machine", "context")}


def _ours(args: argparse.Namespace, dicom_dir: Path, out: Path) -> tuple[Any, Any, dict[str, float], float]:
    """One timed run of our pipeline: case, result, stage seconds, total seconds."""
    from zeroclick.pipelines.cardiac import run as run_cardiac
    from zeroclick.pipelines.cardiac.inputs import load_case
    from zeroclick.pipelines.cardiac.outputs import write_outputs

    t_start = time.perf_counter()
    case = load_case(dicom_dir)
    result = run_cardiac(case, device=args.device, runtime=args.runtime)
    t0 = time.perf_counter()
    write_outputs(result, out)
    outputs_s = time.perf_counter() - t0
    total_s = time.perf_counter() - t_start
    assert result.provenance is not None
    st = result.provenance.stage_seconds
    stages = {"scan": st.get("scan", 0.0), "decode": st.get("decode", 0.0), "inference": st.get("inference", 0.0),
              "quantification": st.get("quantification", 0.0), "outputs": outputs_s}
    return case, result, stages, total_s


def run(args: argparse.Namespace) -> dict[str, Any]:
    from zeroclick.imaging.openvino_runtime import jemalloc_loaded

    allocator = wanted_allocator(args)
    if (allocator == "jemalloc") != jemalloc_loaded():
        if os.environ.get("ZEROCLICK_BENCH_CHILD") == "1":
            raise RuntimeError(f"the child process could not set the {allocator} allocator (LD_PRELOAD)")
        return _in_child(args, allocator)
    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="zeroclick-bench-cmr-") as tmp_name:
        tmp = Path(tmp_name)
        dicom_dir, generate_s = _exam_dir(args, tmp)
        n_files = sum(1 for p in dicom_dir.rglob("*") if p.is_file())
        if args.warmup:
            _ours(args, dicom_dir, tmp / "warmup")
        runs: list[dict[str, Any]] = []
        for i in range(max(1, args.repeats)):  # interleaved: ours, naive, ours, naive ...
            case, result, stages, total_s = _ours(args, dicom_dir, tmp / f"out{i}")
            one: dict[str, Any] = {"total_s": round(total_s, 3), "stages": {k: round(v, 3) for k, v in stages.items()}}
            if not args.no_naive:
                naive_s, naive_slices, mode = naive_inference_s(case.cine, case.lge, n_volumes=args.naive_volumes)
                naive_total = naive_s + stages["scan"] + stages["decode"] + stages["quantification"] + stages["outputs"]
                one.update(naive_total_s=round(naive_total, 3), naive_inference_s=round(naive_s, 3),
                           speedup_vs_naive=round(naive_total / total_s, 2) if total_s > 0 else None)
            runs.append(one)
        prov = result.provenance
        assert prov is not None
        record: dict[str, Any] = {
            "allocator": "jemalloc" if jemalloc_loaded() else "system",
            "runtime": args.runtime,
            "runtime_used": {w.task: w.runtime for w in prov.weights},
            "images": n_files,
            "generate_s": generate_s,
            "repeats": len(runs),
            "total_s": _median(runs, "total_s"),
            "stages": {k: _median([r["stages"] for r in runs], k) for k in runs[0]["stages"]},
            "slices_inferred": prov.slices_inferred,
            "device": prov.device,
            "status": result.status,
            "phases": {"ed": result.phases.ed_phase, "es": result.phases.es_phase, "method": result.phases.method}
            if result.phases else None,
            "measurements": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in result.measurements.items()
                             if k in ("lv_edv_ml", "lv_esv_ml", "lv_ef_percent", "myo_mass_ed_g",
                                      "infarct_percent_of_myocardium")},
        }
        truth = dicom_dir.parent / "ground_truth.json"
        if truth.is_file():
            import json

            gt = json.loads(truth.read_text())
            record["ground_truth"] = {k: gt.get(k) for k in ("lv_edv_ml", "lv_esv_ml", "lv_ef_percent", "ed_phase",
                                                             "es_phase", "infarct_percent_of_myocardium")}
            record["dice_vs_truth"] = truth_dice(result, dicom_dir.parent)
        if not args.no_naive:
            record.update(naive_total_s=_median(runs, "naive_total_s"),
                          naive_inference_s=_median(runs, "naive_inference_s"), naive_slices=naive_slices,
                          naive_mode=mode, naive_runtime="onnxruntime-fp32",
                          speedup_vs_naive=_median(runs, "speedup_vs_naive"))
        record["load_average"] = {"before": load_before, "after": [round(v, 2) for v in os.getloadavg()]}
        if len(runs) > 1:
            record["runs"] = runs
        return record


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return round(statistics.median(values), 3) if values else None
