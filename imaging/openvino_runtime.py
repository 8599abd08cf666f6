"""Run a PyTorch network through OpenVINO on the CPU: the project's cached ONNX export, fp32 or bf16.

Why: the FC-DenseNet (23 GFLOP per 256x256 slice) is memory-bound between its dense concatenations; on the
2-core Zen 4 development machines (AVX-512, VNNI, AVX512_BF16) OpenVINO ran it at 4.2 slices/s in fp32 and
6.6-7.3 slices/s with the bf16 inference-precision hint, against 3.3 for ONNX Runtime fp32 (``FACTS.md``).
bf16 is used only where the CPU computes it natively (``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``
and OpenVINO reporting ``BF16``); elsewhere OpenVINO would emulate or silently ignore it.

The network is the same ONNX file :class:`~zeroclick.imaging.onnx_runtime.OnnxRuntimeRunner` uses (exported
from the project's PyTorch module and cached beside the weights under the SHA-256 of its parameters). Before
a session is used it is checked against PyTorch fp32 on a probe slice (fp32: max |probability difference|
1e-4, bf16: 0.02); a passed check is remembered in a small JSON beside the export, keyed by the OpenVINO
version, the precision and the CPU, so later processes do not pay the probe. Compiled blobs are cached by
OpenVINO itself (``CACHE_DIR`` in ``<export_dir>/openvino``).

int8 is not offered: post-training quantisation breaks this network (BatchNorm after per-tensor-quantised
concatenations amplifies the error up to 70x; nncf int8 found no LV at all on real slices, ``FACTS.md``).

OpenVINO 2026.4's CPU plugin aborts the process (``munmap_chunk(): invalid pointer``) when jemalloc is
preloaded (``LD_PRELOAD``): :func:`openvino_usable` says so, ``runtime="auto"`` then uses ONNX Runtime, and
``runtime="openvino"`` raises :class:`~zeroclick.imaging.errors.DeviceError` instead of crashing.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from zeroclick.imaging.engine import cpu_flags, cpu_model
from zeroclick.imaging.onnx_runtime import PARITY_TOLERANCE, ExportedRunner, atomic_write

logger = logging.getLogger(__name__)

__all__ = ["BF16_TOLERANCE", "OpenVinoRunner", "jemalloc_loaded", "native_bf16", "openvino_available",
           "openvino_usable"]

#: Largest |difference| of probabilities allowed between OpenVINO bf16 and PyTorch fp32 on the probe slice.
#: Measured 0.0025 on the FC-DenseNet; ACDC label Dice bf16 vs fp32 >= 0.9987.
BF16_TOLERANCE = 0.02
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def openvino_available() -> bool:
    """Whether ``openvino`` can be imported."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def jemalloc_loaded() -> bool:
    """Whether jemalloc is mapped into this process (``LD_PRELOAD``), under which OpenVINO's CPU plugin aborts."""
    if "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return True
    try:
        with open("/proc/self/maps") as fh:
            return any("libjemalloc" in line for line in fh)
    except OSError:  # pragma: no cover - non-Linux
        return False


def openvino_usable() -> tuple[bool, str]:
    """``(True, "")`` when OpenVINO can run here, else ``(False, why and what to do)``."""
    if not openvino_available():
        return False, "openvino is not installed (pip install openvino)"
    if jemalloc_loaded():
        return False, ("OpenVINO aborts under the jemalloc LD_PRELOAD (munmap_chunk(): invalid pointer); "
                       "start the process without LD_PRELOAD, or use runtime='onnxruntime'")
    return True, ""


@functools.lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512_BF16 or AMX) and OpenVINO's CPU plugin reports it."""
    if not cpu_flags() & set(_BF16_FLAGS):
        return False
    if not openvino_available():
        return False
    try:
        import openvino as ov

        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # an OpenVINO that cannot query the CPU cannot be trusted with bf16 either
        return False


class OpenVinoRunner(ExportedRunner):
    """:class:`~zeroclick.imaging.onnx_runtime.ExportedRunner` on an OpenVINO CPU compiled model.

    Parameters
    ----------
    precision
        ``"fp32"`` or ``"bf16"`` (OpenVINO's inference-precision hint; refused where the CPU has no native
        bf16, see :func:`native_bf16`).

    Other parameters as :class:`~zeroclick.imaging.onnx_runtime.ExportedRunner`.
    """

    def __init__(self, model: Any, *, precision: str = "fp32", **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"OpenVINO precision must be 'fp32' or 'bf16', got {precision!r}")
        self.precision = precision
        self.tolerance = BF16_TOLERANCE if precision == "bf16" else PARITY_TOLERANCE

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"openvino-{self.precision}"

    def _open(self, data: bytes, shape: tuple[int, ...]) -> Any:
        usable, why = openvino_usable()
        if not usable:
            raise RuntimeError(why)
        if self.precision == "bf16" and not native_bf16():
            raise RuntimeError("this CPU has no native bf16 (avx512_bf16/amx_bf16); use precision='fp32'")
        import openvino as ov

        core = ov.Core()
        if self.export_dir is not None:
            core.set_property({"CACHE_DIR": str(self.export_dir / "openvino")})
        with tempfile.TemporaryDirectory(prefix="zeroclick-openvino-") as tmp:
            onnx_file = Path(tmp) / "model.onnx"
            onnx_file.write_bytes(data)
            graph = core.read_model(str(onnx_file))
        config = {"INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
                  "INFERENCE_NUM_THREADS": self.num_threads, "PERFORMANCE_HINT": "LATENCY"}
        compiled = core.compile_model(graph, "CPU", config)
        return compiled.create_infer_request()

    def _infer(self, session: Any, x: np.ndarray) -> np.ndarray:
        out = session.infer({0: x})
        return np.array(next(iter(out.values())), dtype=np.float32, copy=True)

    # -------------------------------------------------------------------------- remembered parity checks
    def _stamp(self, shape: tuple[int, ...]) -> tuple[Path | None, dict[str, Any]]:
        import openvino as ov

        path = self._cache_path(shape)
        key = {"openvino": ov.get_version(), "precision": self.precision, "cpu": cpu_model(),
               "tolerance": self.tolerance}
        return (None if path is None else path.with_suffix(f".{self.name}.json")), key

    def _verified(self, shape: tuple[int, ...]) -> bool:
        path, key = self._stamp(shape)
        if path is None or not path.is_file():
            return False
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(stored, dict) and all(stored.get(k) == v for k, v in key.items())

    def _record_check(self, shape: tuple[int, ...], diff: float) -> None:
        path, key = self._stamp(shape)
        logger.debug("%s agrees with PyTorch fp32 within %.3g on the probe", self.name, diff)
        if path is not None:
            try:
                atomic_write(path, (json.dumps({**key, "max_abs_probability_difference": diff}) + "\n").encode())
            except OSError as exc:
                logger.warning("could not record the OpenVINO check in %s: %s", path.parent, exc)
