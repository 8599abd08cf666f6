"""Device choice, precision, batching and host/device overlap: the only module that touches ``.cuda()``.

Vocabulary follows MONAI's inferers: ``device`` is where the network runs, ``sw_batch_size``-like
``batch_size`` is slices per forward pass (``None`` = chosen from free memory), ``progress`` shows a bar.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from imaging.errors import DeviceError

logger = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


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
