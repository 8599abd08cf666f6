"""The unit-function interface the cohort runner drives, its registry, and input discovery.

A *kind* of unit (``cmr`` exams, ``slide`` whole-slide images, or anything a caller registers) is a
:class:`UnitKind`: how to recognise a unit on disk, how to load the models once per worker, how to process
one unit into an output folder, and which weights and version the outputs depend on. The runner and both
backends know nothing else about the pipelines, so sharding, the manifest, resume, atomic outputs and
failure isolation are tested with a cheap kind and hold for the real ones.

Every function in a :class:`UnitKind` must be a module-level function (importable by name) so the kind can be
pickled to worker processes and Ray actors.
"""

from __future__ import annotations

import csv
import glob
import importlib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeroclick.imaging.errors import InvalidInputError, ZeroClickError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_GLOB_CHARS = set("*?[")


class PipelineUnavailableError(ZeroClickError, ImportError):
    """The pipeline a cohort kind needs cannot be imported or loaded here; the message says what to install."""


@dataclass(frozen=True)
class Unit:
    """One study or slide of a cohort: a stable ``id`` (also its output folder name) and its input path."""

    id: str
    path: str


@dataclass(frozen=True)
class UnitKind:
    """What the runner needs to know about one kind of unit.

    Attributes
    ----------
    name
        Kind name on the command line (``cmr``, ``slide``).
    is_unit
        ``is_unit(path) -> bool``: whether a child of an input folder, or a glob match, is a unit.
    load
        ``load(device) -> context``: loads models once per worker (process or Ray actor).
    process
        ``process(context, source, out_dir) -> summary``: analyses one unit, writing its files into the
        (empty, private) ``out_dir``; raises on failure. ``summary`` is a small JSON-ready mapping (or
        ``None``) copied into the manifest row; keep patient identifiers out of it.
    weights_id
        ``weights_id() -> str``: identifies the weights the outputs depend on (id and SHA-256).
    version
        ``version() -> str``: the code version the outputs depend on.
    """

    name: str
    is_unit: Callable[[Path], bool]
    load: Callable[[str], Any]
    process: Callable[[Any, Path, Path], Mapping[str, Any] | None]
    weights_id: Callable[[], str]
    version: Callable[[], str]


# name -> a UnitKind, or "module:attribute" naming one (imported only when that kind is used).
_REGISTRY: dict[str, UnitKind | str] = {
    "cmr": "zeroclick.pipelines.cohort.builtin:CMR",
    "slide": "zeroclick.pipelines.cohort.builtin:SLIDE",
}


def register_kind(kind: UnitKind | str, *, name: str | None = None) -> None:
    """Register a kind under ``name`` (default ``kind.name``); a string ``"module:attribute"`` is loaded lazily."""
    if isinstance(kind, str):
        if name is None:
            raise InvalidInputError("register_kind('module:attribute') needs name=")
        _REGISTRY[name] = kind
    else:
        _REGISTRY[name or kind.name] = kind


def unregister_kind(name: str) -> None:
    """Remove a registered kind (tests use it to clean up)."""
    _REGISTRY.pop(name, None)


def kind_names() -> list[str]:
    """Names of the registered kinds, sorted."""
    return sorted(_REGISTRY)


def get_kind(kind: UnitKind | str) -> UnitKind:
    """Resolve a kind name (or pass a :class:`UnitKind` through)."""
    if isinstance(kind, UnitKind):
        return kind
    entry = _REGISTRY.get(kind)
    if entry is None:
        raise InvalidInputError(f"unknown cohort kind {kind!r}; known kinds: {', '.join(kind_names())}")
    if isinstance(entry, str):
        module_name, _, attribute = entry.partition(":")
        entry = getattr(importlib.import_module(module_name), attribute)
        _REGISTRY[kind] = entry
    return entry


def unit_id(text: str) -> str:
    """A folder-safe id: characters outside ``[A-Za-z0-9._-]`` become ``_``; never starts with a dot."""
    cleaned = _UNSAFE.sub("_", text).strip("_") or "unit"
    return "_" + cleaned if cleaned.startswith(".") else cleaned


def discover_units(inputs: Sequence[str | os.PathLike[str]], kind: UnitKind) -> list[Unit]:
    """Expand folders, globs and CSV files into units with unique ids, sorted by id.

    * a folder: each child for which ``kind.is_unit`` is true (hidden names skipped); a folder is always a
      collection, so to name one study folder on its own use a glob or a CSV;
    * a glob (``/data/*.svs``): each match for which ``kind.is_unit`` is true;
    * a ``.csv`` file: one unit per row, column ``path`` (relative paths are relative to the CSV) and an
      optional column ``id``;
    * a file for which ``kind.is_unit`` is true (a slide, a zipped exam) is one unit.

    Ids are the file or folder names made folder-safe; names that collide fall back to the path relative to
    the inputs' common parent. Two CSV rows with the same id are an error.
    """
    named: list[tuple[str | None, Path]] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.suffix.lower() == ".csv" and path.is_file():
            named.extend(_read_csv(path))
        elif _GLOB_CHARS & set(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            named.extend((None, m) for m in matches if kind.is_unit(m))
        elif path.is_dir():
            named.extend((None, c) for c in sorted(path.iterdir()) if not c.name.startswith(".") and kind.is_unit(c))
        elif path.is_file() and kind.is_unit(path):
            named.append((None, path))
        else:
            raise InvalidInputError(
                f"cohort input {text!r} is not a folder, a glob, a CSV or a {kind.name} unit; check the path"
            )
    return _assign_ids(named)


def _read_csv(path: Path) -> list[tuple[str | None, Path]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "path" not in fields:
            raise InvalidInputError(f"{path.name}: a cohort CSV needs a 'path' column (and optionally 'id')")
        rows = []
        for row in reader:
            clean = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            if not clean.get("path"):
                continue
            target = Path(clean["path"]).expanduser()
            if not target.is_absolute():
                target = path.parent / target
            rows.append((clean.get("id") or None, target))
    return rows


def _assign_ids(named: Iterable[tuple[str | None, Path]]) -> list[Unit]:
    entries = [(given, Path(os.path.abspath(p))) for given, p in named]  # keep symlink names as ids
    seen_paths: set[Path] = set()
    unique = []
    for given, p in entries:
        if p not in seen_paths:
            seen_paths.add(p)
            unique.append((given, p))
    ids = [unit_id(given) if given else unit_id(p.name) for given, p in unique]
    clashing = {i for i in ids if ids.count(i) > 1}
    if clashing:
        parent = Path(os.path.commonpath([str(p) for _, p in unique]))
        ids = [
            i if i not in clashing or given else unit_id(str(p.relative_to(parent)).replace(os.sep, "--"))
            for i, (given, p) in zip(ids, unique)
        ]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InvalidInputError(
            f"{len(duplicates)} unit id(s) are used by more than one input (first: {duplicates[0]!r}); "
            "give each row of the CSV a distinct 'id'"
        )
    return sorted((Unit(i, str(p)) for i, (_, p) in zip(ids, unique)), key=lambda u: u.id)
