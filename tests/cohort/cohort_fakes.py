"""A cheap unit kind for the cohort tests: each unit is a small text file.

Content starting with ``CORRUPT`` raises like a corrupt study; ``PARTIAL`` writes a file then raises;
``CRASH`` kills the worker process. Outputs depend only on the input text (byte-identical across backends);
the summary carries the worker's load token so tests can count model loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from zeroclick.imaging.errors import InvalidInputError
from zeroclick.pipelines.cohort import UnitKind


def is_unit(path: Path) -> bool:
    return path.is_file() and path.suffix == ".txt"


def load(device: str) -> dict[str, Any]:
    if os.environ.get("COHORT_FAKE_LOAD_FAILS"):
        raise ImportError("fake pipeline is not installed: pip install fake-pipeline")
    return {"device": device, "token": uuid.uuid4().hex}


def process(context: dict[str, Any], source: Path, out_dir: Path) -> dict[str, Any]:
    text = source.read_text()
    if text.startswith("CORRUPT"):
        raise InvalidInputError("the study has no readable images")
    if text.startswith("CRASH"):
        os._exit(7)
    digest = hashlib.sha256(text.encode()).hexdigest()
    (out_dir / "report.json").write_text(json.dumps({"n_chars": len(text), "sha256": digest}, sort_keys=True) + "\n")
    if text.startswith("PARTIAL"):
        raise RuntimeError("the pipeline stopped half-way")
    (out_dir / "masks").mkdir()
    (out_dir / "masks" / "labels.bin").write_bytes(bytes.fromhex(digest) * 8)
    return {"n_chars": len(text), "load_token": context["token"], "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def weights_id() -> str:
    return os.environ.get("COHORT_FAKE_WEIGHTS", "fake-weights:sha256:0000")


def version() -> str:
    return "fake-1.0"


FAKE = UnitKind(name="fake", is_unit=is_unit, load=load, process=process, weights_id=weights_id, version=version)


def make_cohort(folder: Path, n: int, *, corrupt: tuple[int, ...] = (), crash: tuple[int, ...] = ()) -> Path:
    """``n`` unit files ``study-00.txt`` ... in ``folder``; indices in ``corrupt``/``crash`` misbehave."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        body = f"study {i} " * (i + 1)
        if i in corrupt:
            body = "CORRUPT " + body
        if i in crash:
            body = "CRASH " + body
        (folder / f"study-{i:02d}.txt").write_text(body)
    return folder


def tree_bytes(root: Path, ids: list[str] | None = None) -> dict[str, bytes]:
    """Relative path -> bytes of every unit output file under ``root`` (manifests and hidden folders excluded)."""
    files = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or rel.parts[0].startswith(".") or p.name.startswith("manifest"):
            continue
        if ids is None or rel.parts[0] in ids:
            files[rel.as_posix()] = p.read_bytes()
    return files
