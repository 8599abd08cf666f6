"""``zeroclick bench cmr``: the zero-click cardiac pipeline on a generated exam vs the naive reference approach.

Ours: scan + classify the exam, decode only cine SAX and LGE, ED/ES search on a few slices, whole stack at
ED and ES, LGE, quantification, outputs. Naive (measured in the same run, same machine): every phase of every
cine slice plus the LGE through ONNX Runtime on the CPU, one fresh session per volume, slice batches of 8, the
same pre/post-processing, no phase search (``zeroclick.pipelines.cardiac.segmentation.naive_onnx_segment``).

``naive_total_s`` = our scan + decode + quantification + outputs seconds + the naive inference seconds, so
the ratio isolates the inference strategy. With ``--naive-volumes N`` only N cine phase volumes are run and
the naive inference time is extrapolated to all phases (``naive_mode`` says so); ``--naive-volumes 0`` runs
them all.
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--naive-volumes", type=int, default=0, metavar="N",
                        help="run the naive baseline on N cine phases and extrapolate (0 = all phases, measured)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--allocator", choices=("auto", "system"), default="auto",
                        help="auto: re-run this benchmark under jemalloc (LD_PRELOAD) when Debian's libjemalloc2 is "
                             "installed and not loaded; measured here: torch CPU inference 63 s -> 28 s for 12 "
                             "slices (ONNX Runtime 29 s); system: the C library allocator")
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


def _under_jemalloc(args: argparse.Namespace) -> dict[str, Any]:
    """Run this benchmark again in a child process with jemalloc preloaded; returns its JSON record."""
    import json
    import os
    import subprocess
    import sys

    argv = [sys.executable, "-m", "zeroclick.pipelines.cli", "bench", "cmr", "--json", "--allocator", "system",
            "--images", str(args.images), "--seed", str(args.seed), "--device", str(args.device),
            "--naive-volumes", str(args.naive_volumes)]
    argv += ["--exam", str(args.exam)] if args.exam else []
    argv += ["--no-naive"] if args.no_naive else []
    argv += ["--warmup"] if args.warmup else []
    env = dict(os.environ, LD_PRELOAD=JEMALLOC, MALLOC_CONF=JEMALLOC_CONF)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark under jemalloc failed ({done.returncode}): {done.stderr[-2000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: v for k, v in record.items() if k not in ("benchmark", "machine")}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import os

    if getattr(args, "allocator", "system") == "auto" and os.path.exists(JEMALLOC) \
            and "jemalloc" not in os.environ.get("LD_PRELOAD", ""):
        return _under_jemalloc(args)
    from zeroclick.pipelines.cardiac import run as run_cardiac
    from zeroclick.pipelines.cardiac.inputs import load_case
    from zeroclick.pipelines.cardiac.outputs import write_outputs

    with tempfile.TemporaryDirectory(prefix="zeroclick-bench-cmr-") as tmp_name:
        tmp = Path(tmp_name)
        dicom_dir, generate_s = _exam_dir(args, tmp)
        n_files = sum(1 for p in dicom_dir.rglob("*") if p.is_file())
        if args.warmup:
            run_cardiac(load_case(dicom_dir), device=args.device)
        t_start = time.perf_counter()
        case = load_case(dicom_dir)
        result = run_cardiac(case, device=args.device)
        t0 = time.perf_counter()
        write_outputs(result, tmp / "out")
        outputs_s = time.perf_counter() - t0
        total_s = time.perf_counter() - t_start
        prov = result.provenance
        assert prov is not None
        st = prov.stage_seconds
        stages = {"scan": st.get("scan", 0.0), "decode": st.get("decode", 0.0), "inference": st.get("inference", 0.0),
                  "quantification": st.get("quantification", 0.0), "outputs": outputs_s}
        record: dict[str, Any] = {
            "allocator": "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "system",
            "images": n_files,
            "generate_s": generate_s,
            "total_s": round(total_s, 3),
            "stages": {k: round(v, 3) for k, v in stages.items()},
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
            naive_s, naive_slices, mode = naive_inference_s(case.cine, case.lge, n_volumes=args.naive_volumes)
            naive_total = naive_s + stages["scan"] + stages["decode"] + stages["quantification"] + outputs_s
            record.update(naive_total_s=round(naive_total, 3), naive_inference_s=round(naive_s, 3),
                          naive_slices=naive_slices, naive_mode=mode,
                          speedup_vs_naive=round(naive_total / total_s, 2) if total_s > 0 else None)
        return record
