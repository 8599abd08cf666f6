"""The configuration file of ``zeroclick listen`` (TOML, read with :mod:`tomllib`) and the effective settings.

Precedence: built-in defaults < the file given with ``--config`` < command-line flags. ``zeroclick listen
--config FILE --check-config`` validates the file and prints the effective settings (exit 0) or names the bad
key and what to write instead (exit 2). Example (``deploy/listen.toml`` is a complete one)::

    [listener]
    ae_title = "ZEROCLICK"
    port = 11112
    spool = "/var/lib/zeroclick/spool"
    send = "PACS@10.0.0.5:104"        # default destination of results
    stable_seconds = 10
    workers = 1
    allocator = "auto"                # auto | jemalloc | system (of the analysis worker processes)

    [[peers]]                          # the whitelist: calling AE titles allowed to store
    ae_title = "MRI1"
    send = "PACS2@10.0.0.6:104"       # optional: results of studies from this peer go here

    [tls]
    cert = "/etc/zeroclick/tls/cert.pem"
    key = "/etc/zeroclick/tls/key.pem"

    [retention]
    max_age_days = 30
    max_spool_gb = 200

    [http]
    host = "127.0.0.1"
    port = 11180                       # 0 = no status page
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from zeroclick.imaging.errors import InvalidInputError

__all__ = ["ALLOCATORS", "ConfigError", "DEFAULTS", "JEMALLOC", "JEMALLOC_CONF", "load_config", "merge", "worker_env"]

JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1,retain:true"
ALLOCATORS = ("auto", "jemalloc", "system")


class ConfigError(InvalidInputError):
    """A configuration file or value that cannot be used; the message names the key and what to write."""


# Every setting by its command-line name (argparse dest) and its default
DEFAULTS: dict[str, Any] = {
    "spool": None, "aet": "ZEROCLICK", "host": "127.0.0.1", "port": 11112, "allow": [], "send": None,
    "peer_destinations": {}, "stable_seconds": 10.0, "max_wait_minutes": 60.0, "completeness": "cardiac",
    "workers": 1, "min_free_gb": 1.0, "analysis": None, "allocator": "auto", "tls_cert": None, "tls_key": None,
    "tls_ca": None, "retention_days": None, "retention_max_gb": None, "http_host": "127.0.0.1", "http_port": 11180,
    "association_request_seconds": 10.0, "idle_seconds": 60.0, "max_associations": 16,
    "max_associations_per_peer": 4, "max_instance_mb": 2048.0,
}

# TOML table -> {key in the file: setting}
_FILE_KEYS: dict[str, dict[str, str]] = {
    "listener": {"ae_title": "aet", "host": "host", "port": "port", "spool": "spool", "send": "send",
                 "stable_seconds": "stable_seconds", "max_wait_minutes": "max_wait_minutes",
                 "completeness": "completeness", "workers": "workers", "min_free_gb": "min_free_gb",
                 "analysis": "analysis", "allocator": "allocator"},
    "tls": {"cert": "tls_cert", "key": "tls_key", "ca": "tls_ca"},
    "retention": {"max_age_days": "retention_days", "max_spool_gb": "retention_max_gb"},
    "http": {"host": "http_host", "port": "http_port"},
    "limits": {"association_request_seconds": "association_request_seconds", "idle_seconds": "idle_seconds",
               "max_associations": "max_associations", "max_associations_per_peer": "max_associations_per_peer",
               "max_instance_mb": "max_instance_mb"},
}
_PATHS = {"spool", "tls_cert", "tls_key", "tls_ca"}
_POSITIVE = {"stable_seconds", "max_wait_minutes", "workers", "association_request_seconds", "idle_seconds",
             "max_associations", "max_associations_per_peer", "max_instance_mb", "retention_days", "retention_max_gb"}
_INTEGERS = {"port", "workers", "max_associations", "max_associations_per_peer", "http_port"}
_NUMBERS = {"stable_seconds", "max_wait_minutes", "min_free_gb", "association_request_seconds", "idle_seconds",
            "max_instance_mb", "retention_days", "retention_max_gb"}


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(choices))})"


def _check_aet(value: Any, where: str) -> str:
    text = str(value).strip() if isinstance(value, str) else ""
    if not text or len(text) > 16 or "\\" in text or not text.isprintable():
        raise ConfigError(f"{where} = {value!r}: an AE title is 1-16 printable characters without a backslash")
    return text


def _check_destination(value: Any, where: str) -> str:
    from zeroclick.pipelines.pacs.send import parse_destination

    try:
        parse_destination(str(value))
    except (InvalidInputError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return str(value)


def check_value(name: str, value: Any, where: str | None = None) -> Any:
    """``value`` of setting ``name`` converted and checked; raises :class:`ConfigError` naming ``where``."""
    where = where or name
    if value is None:
        return None
    if name in _INTEGERS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} = {value!r}: write a whole number")
    elif name in _NUMBERS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {value!r}: write a number")
        value = float(value)
    if name in _POSITIVE and value <= 0:
        raise ConfigError(f"{where} = {value!r}: must be greater than 0")
    if name == "min_free_gb" and value < 0:
        raise ConfigError(f"{where} = {value!r}: must be 0 or more")
    if name == "port" and not 1 <= value <= 65535:
        raise ConfigError(f"{where} = {value!r}: a port is 1-65535")
    if name == "http_port" and not 0 <= value <= 65535:
        raise ConfigError(f"{where} = {value!r}: a port is 1-65535 (0 = no status page)")
    if name == "aet":
        value = _check_aet(value, where)
    if name == "send":
        value = _check_destination(value, where)
    if name == "allocator" and value not in ALLOCATORS:
        raise ConfigError(f"{where} = {value!r}: use one of {', '.join(ALLOCATORS)}")
    if name == "completeness":
        from zeroclick.pipelines.pacs.completeness import COMPLETENESS_MODES

        if value not in COMPLETENESS_MODES:
            raise ConfigError(f"{where} = {value!r}: use one of {', '.join(COMPLETENESS_MODES)}")
    if name in _PATHS:
        if not isinstance(value, (str, Path)) or not str(value):
            raise ConfigError(f"{where} = {value!r}: write a path")
        value = Path(value)
    elif name in ("host", "http_host", "analysis") and not isinstance(value, str):
        raise ConfigError(f"{where} = {value!r}: write a string")
    return value


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings a TOML file gives (only those it names), checked; relative paths are relative to the file.

    Raises
    ------
    ConfigError
        Unreadable file, TOML syntax error, unknown table or key (with "did you mean"), bad value.
    """
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError as exc:
            raise ConfigError("reading a configuration file on Python 3.10 needs tomli: pip install tomli") from exc

    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"configuration file {file} cannot be read ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {file} is not valid TOML: {exc}") from exc
    out: dict[str, Any] = {}
    for table, body in data.items():
        if table == "peers":
            out.update(_peers(body, file))
            continue
        keys = _FILE_KEYS.get(table)
        if keys is None:
            raise ConfigError(f"{file}: unknown table [{table}]{_did_you_mean(table, [*_FILE_KEYS, 'peers'])}")
        if not isinstance(body, Mapping):
            raise ConfigError(f"{file}: {table} must be a table ([{table}])")
        for key, value in body.items():
            if key not in keys:
                raise ConfigError(f"{file}: unknown key {key!r} in [{table}]{_did_you_mean(key, list(keys))}")
            name = keys[key]
            value = check_value(name, value, f"[{table}] {key}")
            if name in _PATHS and not value.is_absolute():
                value = (file.parent / value).resolve()
            out[name] = value
    return out


def _peers(body: Any, file: Path) -> dict[str, Any]:
    if not isinstance(body, list):
        raise ConfigError(f"{file}: peers must be an array of tables ([[peers]] with ae_title and optional send)")
    allow: list[str] = []
    destinations: dict[str, str] = {}
    for i, peer in enumerate(body):
        where = f"[[peers]] #{i + 1}"
        if not isinstance(peer, Mapping) or "ae_title" not in peer:
            raise ConfigError(f"{file}: {where} needs ae_title = \"...\"")
        unknown = set(peer) - {"ae_title", "send"}
        if unknown:
            word = sorted(unknown)[0]
            raise ConfigError(f"{file}: unknown key {word!r} in {where}{_did_you_mean(word, ['ae_title', 'send'])}")
        aet = _check_aet(peer["ae_title"], f"{where} ae_title")
        if aet in allow:
            raise ConfigError(f"{file}: {where} ae_title {aet!r} is listed twice")
        allow.append(aet)
        if peer.get("send"):
            destinations[aet] = _check_destination(peer["send"], f"{where} send")
    return {"allow": allow, "peer_destinations": destinations}


def merge(file_settings: Mapping[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults < file < flags (a flag counts when it is not ``None``; ``--allow`` adds to the file's peers)."""
    out = {**DEFAULTS, **file_settings}
    for name, value in flags.items():
        if name not in DEFAULTS or value is None:
            continue
        if name == "allow":
            out["allow"] = [*out.get("allow", []), *[a for a in value if a not in out.get("allow", [])]]
        else:
            out[name] = check_value(name, value, f"--{name.replace('_', '-')}")
    if out["spool"] is None:
        raise ConfigError("no spool folder: give --spool DIR or spool = \"...\" in [listener] of --config")
    if bool(out["tls_cert"]) != bool(out["tls_key"]):
        raise ConfigError("TLS needs both a certificate and its key ([tls] cert and key, or --tls-cert/--tls-key)")
    if out["allocator"] == "jemalloc" and not os.path.exists(JEMALLOC):
        raise ConfigError(f"allocator = 'jemalloc' but {JEMALLOC} is missing: apt-get install libjemalloc2, "
                          "or use allocator = 'auto'")
    return out


def worker_runtime_allocator(allocator: str) -> str:
    """``jemalloc`` or ``system`` for the analysis workers.

    ``auto``: jemalloc (when Debian's libjemalloc2 is installed) only where the workers run ONNX Runtime or
    PyTorch, i.e. OpenVINO is not installed: OpenVINO aborts under the jemalloc preload (``FACTS.md``).
    """
    if allocator != "auto":
        return allocator
    if not os.path.exists(JEMALLOC) or importlib.util.find_spec("openvino") is not None:
        return "system"
    return "jemalloc"


def worker_env(allocator: str) -> dict[str, str]:
    """Environment added to the analysis worker processes for ``allocator`` (``LD_PRELOAD``/``MALLOC_CONF``)."""
    if worker_runtime_allocator(allocator) != "jemalloc":
        return {}
    preload = [p for p in os.environ.get("LD_PRELOAD", "").split(":") if p and "jemalloc" not in p]
    return {"LD_PRELOAD": ":".join([JEMALLOC, *preload]), "MALLOC_CONF": JEMALLOC_CONF}


def effective_for_print(settings: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-ready effective settings (paths as strings), with the worker allocator actually chosen."""
    out = {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()}
    out["worker_allocator"] = worker_runtime_allocator(settings["allocator"])
    return out


def exit_2_on_bad_input(prog: str, run: Callable[[Any], int], args: Any) -> int:
    """``run(args)``; a bad configuration, argument or job id (InvalidInputError) prints its message, exits 2."""
    import sys

    try:
        return run(args)
    except InvalidInputError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return 2
