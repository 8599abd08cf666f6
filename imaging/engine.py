"""Device choice, precision, batching and host/device overlap: the only module that touches ``.cuda()``.

Vocabulary follows MONAI's inferers: ``device`` is where the network runs, ``batch_size`` is samples per
forward pass (``None`` = chosen from free memory), ``progress`` shows a bar.

:class:`Engine` runs any ``torch.nn.Module`` that maps ``[B, C, H, W]`` (or any ``[B, ...]``) to class scores
or probabilities ``[B, K, ...]``::

    engine = Engine()                                   # cuda > mps > cpu, bf16 autocast on CUDA
    # bf16 vs fp32 on the real ACDC/EMIDEC cases (H200): 99.991-99.997 % of voxels get the same label,
    # volumes move by <= 0.25 %; fp32 on the GPU (TF32 off) reproduces the CPU/ONNX reference exactly.
    probs = engine.predict(model, array)                # np.ndarray [N, K, H, W] float32
    labels = engine.predict(model, batches_iter, output="labels")  # argmax on the device, uint8

On a GPU the input batches are prepared on the host by a background thread (decode, ``float32``,
pinned memory), copied on a separate CUDA stream with ``non_blocking=True`` while the previous batch
computes, and results come back through pinned buffers without stalling the next forward pass.

CPU notes (measured on the 2-core development machines, see ``FACTS.md``):

* the glibc allocator costs 40-60 % at batch >= 16; preloading jemalloc recovers it, but only when set
  before the process starts::

      LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \\
      MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1,retain:true zeroclick cmr ...

  :func:`jemalloc_hint` returns that advice when jemalloc is installed but not loaded.
* intra-op threads = the cores in this process's affinity mask (:func:`configure_cpu_threads`).
* ``runtime="auto"`` runs networks that declare ``zeroclick_onnx_export = True`` (the FC-DenseNet) through
  the same module's ONNX export (exported once, cached beside the weights, checked against PyTorch):
  OpenVINO (:mod:`zeroclick.imaging.openvino_runtime`) where it is installed and usable, in bf16 where the
  CPU computes bf16 natively (AVX512_BF16/AMX) and in fp32 elsewhere; otherwise ONNX Runtime fp32
  (:mod:`zeroclick.imaging.onnx_runtime`); otherwise PyTorch. Measured on a 2-core Zen 4 (``FACTS.md``):
  ONNX Runtime fp32 3.3, OpenVINO fp32 4.2, OpenVINO bf16 6.6-7.3 slices/s; PyTorch eager ~1.
  OpenVINO aborts under the jemalloc preload, so a process started with it uses ONNX Runtime.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import platform
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from zeroclick.imaging import progress
from zeroclick.imaging.errors import DeviceError

logger = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
RUNTIME_CHOICES = ("auto", "torch", "onnxruntime", "openvino")
PRECISION_CHOICES = ("fp32", "bf16")
Output = Literal["probabilities", "labels"]

# Largest automatic batch per device kind. CPU: FACTS.md measured a 40-60 % allocator penalty at batch >= 16
# without jemalloc, and a 22-GFLOP slice already fills 2 cores, so 8. CUDA: bounded by free memory first
# (the H200 chose 131 for the FC-DenseNet in bf16, 620 slices/s).
MAX_AUTO_BATCH = {"cpu": 8, "mps": 16, "cuda": 256}
MEMORY_FRACTION = {"cpu": 0.25, "mps": 0.3, "cuda": 0.6}


def select_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``auto`` to cuda > mps > cpu; refuse a device that is not present with a clear message."""
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device={device!r} asked for but CUDA is not available in this torch build "
                f"({torch.__version__}); use device='auto' or 'cpu', or install a CUDA build of torch (see README)."
            )
        return torch.device(name)
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError("device='mps' asked for but MPS is not available; use 'auto' or 'cpu'.")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is none)."""
    return frozenset(_cpuinfo_field("flags").split())


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU model name of ``/proc/cpuinfo``, else :func:`platform.processor`."""
    return _cpuinfo_field("model name") or platform.processor() or "unknown"


def _cpuinfo_field(name: str) -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.split(":", 1)[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - non-Linux
        pass
    return ""


def configure_cpu_threads(n: int | None = None) -> int:
    """Use the physical cores available to this process (affinity-aware) for intra-op parallelism."""
    if n is None:
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - non-Linux
            n = os.cpu_count() or 1
    torch.set_num_threads(max(1, int(n)))
    return torch.get_num_threads()


@dataclass(frozen=True)
class Precision:
    """Compute precision: ``fp32`` everywhere, or ``bf16`` autocast (GPU default)."""

    name: str  # "fp32" | "bf16"

    def __post_init__(self) -> None:
        if self.name not in PRECISION_CHOICES:
            raise DeviceError(f"precision {self.name!r} is not one of {', '.join(PRECISION_CHOICES)}")

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.name == "bf16" and device.type in ("cuda", "cpu"):
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def default_precision(device: torch.device) -> Precision:
    return Precision("bf16" if device.type == "cuda" else "fp32")


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)`` in chunks of ``batch_size``."""
    for start in range(0, n, max(1, batch_size)):
        yield slice(start, min(n, start + batch_size))


def jemalloc_hint() -> str | None:
    """The LD_PRELOAD advice when Debian's libjemalloc2 is installed but not loaded (CPU runs); else ``None``."""
    lib = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
    if not os.path.exists(lib) or "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return None
    return (f"LD_PRELOAD={lib} MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1,retain:true "
            "(set before the process starts) speeds CPU inference at batch >= 16 by 40-60 %")


# ----------------------------------------------------------------------------------------------- memory
def estimate_sample_bytes(model: torch.nn.Module, sample_shape: tuple[int, ...], *, bytes_per_value: int = 4) -> int:
    """Upper bound of activation memory for one sample: sum of every leaf module's output, shapes only.

    Runs the model on the ``meta`` device (no compute, no memory), so it costs milliseconds.
    """
    try:
        meta_model = copy.deepcopy(model).to("meta")
    except Exception:  # a model that cannot move to meta: assume a generous 64 MB per sample
        return 64 << 20
    total = 0

    def hook(_m: torch.nn.Module, _i: Any, out: Any) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * bytes_per_value

    handles = [m.register_forward_hook(hook) for m in meta_model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            meta_model(torch.empty((1, *sample_shape), device="meta"))
    except Exception:
        return 64 << 20
    finally:
        for h in handles:
            h.remove()
    return int(total)


def free_memory_bytes(device: torch.device) -> int:
    """Free memory where the network runs: ``torch.cuda.mem_get_info`` on CUDA, ``psutil`` otherwise."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


# ----------------------------------------------------------------------------------------------- engine
@dataclass(frozen=True)
class AgreementReport:
    """Agreement of a low-precision run with fp32 on the same inputs."""

    precision: str
    n_voxels: int
    label_agreement_fraction: float
    max_abs_probability_difference: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "n_voxels": self.n_voxels,
            "label_agreement_fraction": self.label_agreement_fraction,
            "max_abs_probability_difference": self.max_abs_probability_difference,
        }


class Engine:
    """Batched inference for any PyTorch module on the best available device.

    Parameters
    ----------
    device
        ``"auto"`` (cuda > mps > cpu), ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"cpu"``.
    precision
        ``"fp32"`` or ``"bf16"`` (autocast); ``None`` = bf16 on CUDA, fp32 elsewhere. Check bf16 on your
        data with :meth:`agreement` (the cardiac models agree on >= 99.9 % of voxels).
    batch_size
        Samples per forward pass; ``None`` chooses from free memory (``mem_get_info`` / ``psutil``).
    compile
        Wrap the model in ``torch.compile`` (first call 20-40 s on CPU; pays off on long GPU runs).
    progress
        Show a rich progress bar while predicting.
    channels_last
        Use the channels-last memory format; ``None`` = off. Measured on the FC-DenseNet (H200, batch 128):
        fp32 333 -> 281 slices/s and bf16 621 -> 582 slices/s with channels_last, i.e. slower (the dense
        blocks' concatenations dominate); try it for other networks.
    num_threads
        CPU intra-op threads; ``None`` = the cores of this process's affinity mask.
    runtime
        ``"torch"``, ``"onnxruntime"`` (CPU, fp32 only: the module exported to ONNX and checked against
        PyTorch), ``"openvino"`` (CPU: the same export; bf16 where the CPU has native bf16 unless
        ``precision="fp32"``) or ``"auto"``: for modules whose class sets ``zeroclick_onnx_export = True`` on
        the CPU, OpenVINO when installed and usable (see :func:`zeroclick.imaging.openvino_runtime.openvino_usable`),
        else ONNX Runtime in fp32, else PyTorch; PyTorch on GPUs. Under ``"auto"`` a runtime whose export
        fails or disagrees with PyTorch fp32 falls back to the next one (logged, and visible in :attr:`info`).
    export_dir
        Cache folder for ONNX exports (``None``: export in memory, once per engine and model).

    Examples
    --------
    >>> import numpy as np, torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1), torch.nn.Softmax(dim=1))
    >>> Engine(device="cpu", batch_size=2).predict(net, np.zeros((5, 1, 8, 8), np.float32)).shape
    (5, 3, 8, 8)
    """

    def __init__(
        self,
        device: str | torch.device = "auto",
        precision: str | None = None,
        batch_size: int | None = None,
        compile: bool = False,
        progress: bool = False,
        *,
        channels_last: bool | None = None,
        num_threads: int | None = None,
        runtime: str = "auto",
        export_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.device = select_device(device)
        self.precision = Precision(precision) if precision is not None else default_precision(self.device)
        if batch_size is not None and int(batch_size) < 1:
            raise DeviceError(f"batch_size must be >= 1 or None (automatic), got {batch_size}")
        self.batch_size = None if batch_size is None else int(batch_size)
        self.compile = bool(compile)
        self.progress = bool(progress)
        self.channels_last = False if channels_last is None else bool(channels_last)
        self.num_threads = configure_cpu_threads(num_threads) if self.device.type == "cpu" else torch.get_num_threads()
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if runtime not in RUNTIME_CHOICES:
            raise DeviceError(f"runtime must be one of {RUNTIME_CHOICES}, got {runtime!r}")
        if runtime == "onnxruntime" and (self.device.type != "cpu" or self.precision.name != "fp32" or compile):
            raise DeviceError("runtime='onnxruntime' runs fp32 on the CPU only; use device='cpu', precision='fp32' "
                              "and compile=False, or runtime='torch'")
        self.runtime = runtime
        self.openvino_precision = self._openvino_precision(precision, compile)
        self.export_dir = export_dir
        self._prepared: dict[int, tuple[torch.nn.Module, Any]] = {}
        self._auto_batch: dict[tuple[int, tuple[int, ...]], int] = {}

    def __repr__(self) -> str:
        return (f"Engine(device={str(self.device)!r}, precision={self.precision.name!r}, batch_size={self.batch_size}, "
                f"compile={self.compile}, channels_last={self.channels_last})")

    @property
    def info(self) -> dict[str, Any]:
        """Device, precision and settings for run metadata."""
        d: dict[str, Any] = {
            "device": str(self.device),
            "precision": self.precision.name,
            "batch_size": self.batch_size,
            "compile": self.compile,
            "channels_last": self.channels_last,
            "cpu_threads": self.num_threads,
            "runtime": self.runtime,
        }
        used = {type(m).__name__: getattr(r, "runtime", "torch") for m, r in self._prepared.values()}
        if used:
            d["runtime_used"] = used
        if self.device.type == "cuda":
            d["gpu"] = torch.cuda.get_device_name(self.device)
        return d

    def _openvino_precision(self, precision: str | None, compile: bool) -> str | None:
        """OpenVINO's precision for this engine (``None``: OpenVINO is not a choice); raises for an explicit
        ``runtime="openvino"`` that cannot run here."""
        if self.runtime not in ("auto", "openvino"):
            return None
        if self.runtime == "auto" and (self.device.type != "cpu" or compile):
            return None
        from zeroclick.imaging.openvino_runtime import native_bf16, openvino_usable

        usable, why = openvino_usable()
        if self.runtime == "openvino":
            if self.device.type != "cpu" or compile:
                raise DeviceError("runtime='openvino' runs on the CPU only; use device='cpu' and compile=False, "
                                  "or runtime='torch' (GPUs keep PyTorch bf16)")
            if not usable:
                raise DeviceError(f"runtime='openvino' cannot run here: {why}")
            if precision == "bf16" and not native_bf16():
                raise DeviceError("runtime='openvino' with precision='bf16' needs a CPU with native bf16 "
                                  "(avx512_bf16 or amx_bf16); use precision='fp32'")
        elif not usable:
            return None
        if precision is not None:
            return precision if precision == "fp32" or native_bf16() else None
        return "bf16" if native_bf16() else "fp32"

    # ------------------------------------------------------------------------------------------ model
    def cpu_runtime_for(self, model: torch.nn.Module) -> str:
        """The runtime :meth:`prepare` chooses for ``model``: ``"openvino"``, ``"onnxruntime"`` or ``"torch"``.

        ``auto`` picks an exported runtime only for modules whose class sets ``zeroclick_onnx_export = True``;
        OpenVINO where :attr:`openvino_precision` is set (installed, on the CPU, not under jemalloc), then ONNX
        Runtime for fp32, then PyTorch.
        """
        if self.runtime != "auto":
            return self.runtime
        if self.device.type != "cpu" or self.compile or not getattr(model, "zeroclick_onnx_export", False):
            return "torch"
        if self.openvino_precision is not None:
            return "openvino"
        from zeroclick.imaging.onnx_runtime import onnxruntime_available

        return "onnxruntime" if self.precision.name == "fp32" and onnxruntime_available() else "torch"

    def wants_onnxruntime(self, model: torch.nn.Module) -> bool:
        """Whether :meth:`prepare` runs ``model`` through its ONNX export (ONNX Runtime or OpenVINO)."""
        return self.cpu_runtime_for(model) in ("onnxruntime", "openvino")

    def prepare(self, model: torch.nn.Module) -> Any:
        """Eval mode, on the device, channels-last and compiled as configured (cached per model).

        Returns the callable that runs a batch: the module itself, its ``torch.compile`` wrapper, or an
        :class:`zeroclick.imaging.onnx_runtime.OnnxRuntimeRunner`.
        """
        key = id(model)
        hit = self._prepared.get(key)
        if hit is not None and hit[0] is model:
            return hit[1]
        model.eval()
        model.to(self.device)
        chosen = self.cpu_runtime_for(model)
        if chosen in ("onnxruntime", "openvino"):
            exported = self._exported_runner(model, chosen)
            self._prepared[key] = (model, exported)
            return exported
        if self.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        runner: torch.nn.Module = model
        if self.compile:
            runner = torch.compile(model)  # type: ignore[assignment]
        self._prepared[key] = (model, runner)
        return runner

    def _exported_runner(self, model: torch.nn.Module, chosen: str) -> Any:
        """An OpenVINO or ONNX Runtime runner; under ``auto`` a failed OpenVINO falls back to ONNX Runtime
        (where installed, fp32) and that to PyTorch."""
        from zeroclick.imaging.onnx_runtime import OnnxRuntimeRunner, onnxruntime_available

        auto = self.runtime == "auto"
        common: dict[str, Any] = {"num_threads": self.num_threads, "export_dir": self.export_dir}
        if chosen == "onnxruntime":
            return OnnxRuntimeRunner(model, fallback=auto, **common)
        from zeroclick.imaging.openvino_runtime import OpenVinoRunner

        fallback: Any = False
        if auto:
            ort_ok = self.precision.name == "fp32" and onnxruntime_available()
            fallback = (lambda: OnnxRuntimeRunner(model, fallback=True, **common)) if ort_ok else True
        return OpenVinoRunner(model, precision=self.openvino_precision or "fp32", fallback=fallback, **common)

    def batch_size_for(self, model: torch.nn.Module, sample_shape: tuple[int, ...]) -> int:
        """The configured batch size, or one chosen from free memory and a per-sample activation estimate."""
        if self.batch_size is not None:
            return self.batch_size
        key = (id(model), tuple(sample_shape))
        if key not in self._auto_batch:
            bpv = 2 if self.precision.name == "bf16" else 4
            per_sample = max(1, estimate_sample_bytes(model, tuple(sample_shape), bytes_per_value=bpv))
            budget = MEMORY_FRACTION.get(self.device.type, 0.25) * free_memory_bytes(self.device)
            chosen = int(max(1, min(MAX_AUTO_BATCH.get(self.device.type, 8), budget // per_sample)))
            logger.debug("auto batch %d (%.0f MB per sample, %.0f MB budget)", chosen, per_sample / 2**20, budget / 2**20)
            self._auto_batch[key] = chosen
        return self._auto_batch[key]

    # ---------------------------------------------------------------------------------------- predict
    def predict(
        self,
        model: torch.nn.Module,
        data: np.ndarray | torch.Tensor | Iterable[np.ndarray | torch.Tensor],
        *,
        output: Output = "probabilities",
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Run ``model`` on ``data`` and return probabilities ``[N, K, ...]`` (float32) or labels ``[N, ...]``.

        ``data`` is one array ``[N, C, ...]`` or an iterable of such arrays (e.g. a generator that decodes
        the next images while the device computes); arrays larger than the batch size are split.
        """
        parts = list(self.iter_predict(model, data, output=output, batch_size=batch_size))
        if not parts:
            return np.zeros((0,), np.uint8 if output == "labels" else np.float32)
        return np.concatenate(parts, axis=0)

    def iter_predict(
        self,
        model: torch.nn.Module,
        data: np.ndarray | torch.Tensor | Iterable[np.ndarray | torch.Tensor],
        *,
        output: Output = "probabilities",
        batch_size: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Stream results batch by batch (same order as the input)."""
        if output not in ("probabilities", "labels"):
            raise ValueError(f"output must be 'probabilities' or 'labels', got {output!r}")
        runner = self.prepare(model)
        total = int(data.shape[0]) if isinstance(data, (np.ndarray, torch.Tensor)) else None
        chunks = [data] if isinstance(data, (np.ndarray, torch.Tensor)) else data
        bar = _progress(total) if self.progress else None
        with contextlib.ExitStack() as stack:
            if bar is not None:
                stack.enter_context(bar[0])
            host = _Prefetcher(self._host_batches(model, chunks, batch_size), pin=self.device.type == "cuda")
            stack.callback(host.close)
            if self.device.type == "cuda":
                for out in self._run_cuda(runner, host, output, bar):
                    progress.advance(len(out))  # the ambient reporter (zeroclick.imaging.progress): silent by default
                    yield out
            else:
                for x in host:
                    y = self._forward(runner, x.to(self.device), output)
                    if bar is not None:
                        bar[1](len(x))
                    progress.advance(len(x))
                    yield y.cpu().numpy()

    def _host_batches(self, model: torch.nn.Module, chunks: Iterable[np.ndarray | torch.Tensor],
                      batch_size: int | None) -> Iterator[torch.Tensor]:
        """Full batches of ``batch_size`` samples across chunk boundaries (many small chunks, e.g. one or two
        slices per cardiac phase, would otherwise each be a forward pass of their own), in input order."""
        bs = batch_size
        pending: list[torch.Tensor] = []
        n_pending = 0
        for chunk in chunks:
            t = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)) if isinstance(chunk, np.ndarray) \
                else chunk.to(torch.float32)
            if t.ndim < 2:
                raise ValueError(f"expected batches shaped [N, C, ...], got {tuple(t.shape)}")
            if bs is None:
                bs = batch_size or self.batch_size_for(model, tuple(t.shape[1:]))
            if pending and tuple(t.shape[1:]) != tuple(pending[0].shape[1:]):
                yield torch.cat(pending)  # samples of another shape never share a batch
                pending, n_pending = [], 0
            pending.append(t)
            n_pending += int(t.shape[0])
            while n_pending >= bs:
                joined = torch.cat(pending) if len(pending) > 1 else pending[0]
                yield joined[:bs]
                rest = joined[bs:]
                pending, n_pending = ([rest], int(rest.shape[0])) if len(rest) else ([], 0)
        if pending:
            yield torch.cat(pending) if len(pending) > 1 else pending[0]

    def _forward(self, runner: torch.nn.Module, x: torch.Tensor, output: Output) -> torch.Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self.precision.autocast(self.device), self._fp32_guard():
            y = runner(x)
        if output == "labels":
            return y.argmax(dim=1).to(torch.uint8)
        return y.float().contiguous()

    def _fp32_guard(self) -> contextlib.AbstractContextManager:
        """fp32 means fp32 on CUDA too: no TF32 convolutions/matmuls (they move probabilities by ~1e-3)."""
        if self.device.type == "cuda" and self.precision.name == "fp32":
            return torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=False)
        return contextlib.nullcontext()

    def _run_cuda(self, runner: torch.nn.Module, host: _Prefetcher, output: Output,
                  bar: tuple[Any, Callable[[int], None]] | None) -> Iterator[np.ndarray]:
        copy_stream = torch.cuda.Stream(self.device)
        compute = torch.cuda.current_stream(self.device)
        pending: tuple[torch.Tensor, torch.cuda.Event] | None = None
        for x_host in host:
            with torch.cuda.stream(copy_stream):
                x = x_host.to(self.device, non_blocking=True)
            compute.wait_stream(copy_stream)
            x.record_stream(compute)
            y = self._forward(runner, x, output)
            out = torch.empty(y.shape, dtype=y.dtype, pin_memory=True)
            out.copy_(y, non_blocking=True)
            done = torch.cuda.Event()
            done.record(compute)
            if pending is not None:  # the previous batch's copy finished while this one computed
                pending[1].synchronize()
                yield pending[0].numpy()
            pending = (out, done)
            if bar is not None:
                bar[1](len(x_host))
        if pending is not None:
            pending[1].synchronize()
            yield pending[0].numpy()

    # ------------------------------------------------------------------------------------- precision
    def agreement(self, model: torch.nn.Module, data: np.ndarray, *, precision: str = "bf16") -> AgreementReport:
        """Run ``data`` in fp32 and in ``precision`` on this engine's device and compare labels/probabilities."""
        low = Engine(self.device, precision=precision, batch_size=self.batch_size, channels_last=self.channels_last)
        ref = Engine(self.device, precision="fp32", batch_size=self.batch_size, channels_last=self.channels_last)
        p_ref = ref.predict(model, data)
        p_low = low.predict(model, data)
        agree = float(np.mean(p_ref.argmax(1) == p_low.argmax(1)))
        return AgreementReport(precision, int(p_ref[:, 0].size), agree, float(np.max(np.abs(p_ref - p_low))))

    def benchmark(self, model: torch.nn.Module, sample: np.ndarray, *, repeats: int = 3) -> float:
        """Samples per second for ``sample`` (one warm-up pass, best of ``repeats``)."""
        self.predict(model, sample)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.predict(model, sample)
            best = min(best, time.perf_counter() - t0)
        return float(len(sample) / best)


class _Prefetcher:
    """Produce host batches in a background thread (decode, float32, pinned memory) two batches ahead."""

    _END = object()

    def __init__(self, source: Iterator[torch.Tensor], *, pin: bool, depth: int = 2) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._pin = pin
        self._thread = threading.Thread(target=self._run, args=(source,), name="zeroclick-prefetch", daemon=True)
        self._thread.start()

    def _run(self, source: Iterator[torch.Tensor]) -> None:
        try:
            for t in source:
                if self._stop.is_set():
                    return
                t = t.contiguous()
                if self._pin:
                    t = t.pin_memory()
                self._put(t)
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._put(exc)
            return
        self._put(self._END)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[torch.Tensor]:
        while True:
            item = self._q.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _progress(total: int | None) -> tuple[Any, Callable[[int], None]]:
    from rich.progress import Progress

    prog = Progress(transient=True)
    task = prog.add_task("inference", total=total)
    return prog, lambda n: prog.advance(task, n)
