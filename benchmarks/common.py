"""Shared helpers for benchmarks: machine/device/version info and a stage timer."""

from __future__ import annotations

import hashlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Machine, CPU, device and library versions for a benchmark record."""
    info: dict[str, Any] = {
        "hostname_hash": hashlib.sha256(platform.node().encode()).hexdigest()[:8],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except Exception:  # pragma: no cover - torch missing is reported as versions below
        pass
    info["versions"] = {
        d: _version(d)
        for d in ("zeroclick", "torch", "monai", "pydicom", "highdicom", "numpy", "onnxruntime", "openslide-python",
                  "openslide-bin", "imagecodecs", "tifffile", "openvino")
    }
    return info


def _cpu_model() -> str:
    from zeroclick.imaging.engine import cpu_model

    return cpu_model()


def git_commit() -> dict[str, Any]:
    """The checkout's commit and whether tracked files differ from it (``None`` outside a git checkout)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": bool(dirty)}


def run_context() -> dict[str, Any]:
    """When and on what code a benchmark ran: git commit, UTC time, load average (1/5/15 min), CPU flags that
    decide the runtime (AVX-512, VNNI, bf16, AMX)."""
    from zeroclick.imaging.engine import cpu_flags

    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return {
        **git_commit(),
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "cpu_flags": [f for f in wanted if f in cpu_flags()],
    }


class StageTimer:
    """Collects wall-clock seconds per named stage."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - t0

    def total(self) -> float:
        return sum(self.stages.values())


def median_time(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
