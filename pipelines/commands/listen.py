"""``zeroclick listen``: a zero-click DICOM Storage SCP (receive -> analyse when complete -> send results back)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Receive studies by C-STORE, analyse each study once no new image arrived for --stable-seconds and its series
are complete by their own geometry (--completeness), and send the results (SEG, SR, PDF) to --send by C-STORE.
A study still incomplete --max-wait-minutes after its last image ends as "incomplete" (nothing sent); one with
conflicting versions of an instance waits for --resolve. Everything received is kept in SPOOL until the retention
(--retention-days, --retention-max-gb) removes finished studies; the job queue survives crashes and restarts
(SPOOL/queue.sqlite). The called AE title must be --aet; the calling one must be allowed (--allow / [[peers]]).

Connections: a peer must complete its association request (TLS handshake included) within
--association-request-seconds; at most 8 such pending connections per peer address (the oldest is closed
first); --max-associations in all and --max-associations-per-peer per address; a PDU or a C-STORE idle for
--idle-seconds ends the association; an instance over --max-instance-mb is refused (0xA700).

Settings may come from a TOML file (--config; see deploy/listen.toml): flags override it. --check-config
validates and prints the effective settings. A status page (/, /healthz, /metrics) is served on --http
(127.0.0.1:11180 by default; "off" for none). Jobs: `zeroclick jobs list|show|retry|purge`.
Exit codes: 0 stopped normally (or --status / --resolve / --check-config done), 2 bad arguments or configuration.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from zeroclick.pipelines.pacs.completeness import COMPLETENESS_MODES

    p.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file (flags override it)")
    p.add_argument("--check-config", action="store_true",
                   help="validate the configuration, print the effective settings as JSON and exit")
    p.add_argument("--log-json", action="store_true", help="log one JSON object per line (for journald/Loki/ELK)")
    p.add_argument("--http", metavar="HOST:PORT", help="status page, /healthz and /metrics (default "
                                                      "127.0.0.1:11180; 'off' for none)")
    p.add_argument("--allocator", choices=("auto", "jemalloc", "system"),
                   help="allocator of the analysis workers: auto (jemalloc for ONNX Runtime/PyTorch when installed, "
                        "the system one where OpenVINO runs; default), jemalloc, system")
    p.add_argument("--retention-days", type=float, help="remove finished studies whose last image is older")
    p.add_argument("--retention-max-gb", type=float, help="remove the oldest finished studies while the spool is larger")
    p.add_argument("--spool", metavar="DIR", help="spool folder (received files + queue.sqlite)")
    p.add_argument("--aet", default="ZEROCLICK", help="our AE title (default ZEROCLICK)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 = all)")
    p.add_argument("--port", type=int, default=11112, help="port (default 11112)")
    p.add_argument("--allow", action="append", default=[], metavar="AET",
                   help="calling AE title allowed to store (repeat; default: any, with a warning)")
    p.add_argument("--send", metavar="AET@HOST:PORT", help="where results are sent by C-STORE")
    p.add_argument("--stable-seconds", type=float, default=10.0, help="study complete after N s without news")
    p.add_argument("--workers", type=int, default=1, help="analysis worker processes (default 1)")
    p.add_argument("--min-free-gb", type=float, default=1.0, help="refuse new data under this free disk space")
    p.add_argument("--analysis", metavar="MODULE:FUNCTION", help="analysis to run (default: the cardiac pipeline)")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate: enables TLS")
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    p.add_argument("--tls-ca", type=Path, help="PEM CA bundle: require and verify client certificates")
    p.add_argument("--completeness", choices=COMPLETENESS_MODES, default="cardiac",
                   help="what complete means: cardiac (short-axis cine grid complete, LGE stacks consistent; "
                        "default), geometry (every series a complete grid), none (quiet period only)")
    p.add_argument("--max-wait-minutes", type=float, default=60.0,
                   help="an incomplete study ends as 'incomplete' this long after its last image (default 60)")
    p.add_argument("--association-request-seconds", type=float, default=10.0,
                   help="deadline from TCP connect to a complete association request, TLS included (default 10)")
    p.add_argument("--idle-seconds", type=float, default=60.0,
                   help="ACSE/DIMSE/network timeout of an association (default 60)")
    p.add_argument("--max-associations", type=int, default=16, help="simultaneous associations (default 16)")
    p.add_argument("--max-associations-per-peer", type=int, default=4,
                   help="simultaneous associations from one address (default 4)")
    p.add_argument("--max-instance-mb", type=float, default=2048.0,
                   help="largest instance accepted, MiB (default 2048); larger ones are refused with 0xA700")
    p.add_argument("--status", action="store_true", help="print the queue state of SPOOL as JSON and exit")
    p.add_argument("--resolve", metavar="STUDY", help="resolve the conflicting instances of STUDY (its hash in "
                                                      "--status) with --keep, then exit")
    p.add_argument("--keep", choices=("first", "latest"), default="first",
                   help="with --resolve: analyse the versions received first (default) or latest")
    from zeroclick.pipelines.pacs.config import DEFAULTS

    for action in p._actions:  # None = not given, so that the configuration file's value is kept
        if action.dest in DEFAULTS:
            action.default = None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("listen", help="DICOM listener: receive, analyse when complete, send results back",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run_from_args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zeroclick listen", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def settings_from_args(args: argparse.Namespace) -> dict:
    """Defaults < ``--config`` file < flags, checked (raises ConfigError naming the bad key or flag)."""
    from zeroclick.pipelines.pacs.config import ConfigError, load_config, merge

    flags = dict(vars(args))
    http = flags.pop("http", None)
    if http is not None:
        if http.lower() in ("off", "none", "0"):
            flags["http_port"] = 0
        else:
            host, _, port = http.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"--http {http!r}: write HOST:PORT (e.g. 127.0.0.1:11180) or off")
            flags["http_host"], flags["http_port"] = host.strip("[]"), int(port)
    return merge(load_config(args.config) if args.config else {}, flags)


def _configure_logging(args: argparse.Namespace) -> None:
    """INFO lines (associations, studies, jobs, sends) unless --quiet; JSON lines with --log-json."""
    from zeroclick.pipelines.pacs.observe import JsonFormatter

    log = logging.getLogger("zeroclick")
    if not getattr(args, "quiet", False) and log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    if args.log_json:
        handlers = [h for h in log.handlers if not isinstance(h, logging.NullHandler)] or logging.getLogger().handlers
        if not handlers:
            handlers = [logging.StreamHandler(sys.stderr)]
            log.addHandler(handlers[0])
        for handler in handlers:
            handler.setFormatter(JsonFormatter())


def run_from_args(args: argparse.Namespace) -> int:
    """Run the command; a bad configuration, argument or job id exits 2 with a message saying what to do."""
    from zeroclick.pipelines.pacs.config import exit_2_on_bad_input

    return exit_2_on_bad_input("zeroclick listen", _run, args)


def _run(args: argparse.Namespace) -> int:
    from zeroclick.pipelines.pacs.config import effective_for_print
    from zeroclick.pipelines.pacs.listener import Listener, Spool

    settings = settings_from_args(args)
    if args.check_config:
        sys.stdout.write(json.dumps(effective_for_print(settings), indent=2) + "\n")
        return 0
    if args.status or args.resolve:
        spool = Spool(Path(settings["spool"]))
        try:
            if args.resolve:
                n = spool.resolve_conflicts(args.resolve, keep=args.keep)
                sys.stdout.write(json.dumps({"study": args.resolve, "resolved": n, "kept": args.keep}) + "\n")
            else:
                sys.stdout.write(json.dumps(spool.status(), indent=2) + "\n")
        finally:
            spool.close()
        return 0
    _configure_logging(args)
    Listener(listener_config(settings)).serve_forever()
    return 0


def listener_config(s: dict):
    """The :class:`ListenerConfig` of effective settings (see :func:`settings_from_args`)."""
    from zeroclick.pipelines.pacs.config import worker_env
    from zeroclick.pipelines.pacs.listener import ConnectionLimits, ListenerConfig

    limits = ConnectionLimits(
        association_request_s=s["association_request_seconds"], idle_s=s["idle_seconds"],
        max_associations=s["max_associations"], max_associations_per_peer=s["max_associations_per_peer"],
        max_instance_bytes=int(s["max_instance_mb"] * (1 << 20)),
    )
    return ListenerConfig(
        spool_dir=Path(s["spool"]), ae_title=s["aet"], host=s["host"], port=s["port"],
        allowed_aets=tuple(s["allow"]), destination=s["send"], stable_s=s["stable_seconds"],
        max_wait_s=s["max_wait_minutes"] * 60.0, completeness=s["completeness"],
        workers=s["workers"], min_free_bytes=int(s["min_free_gb"] * (1 << 30)), analysis=s["analysis"],
        tls_cert=s["tls_cert"], tls_key=s["tls_key"], tls_ca=s["tls_ca"], limits=limits,
        extra_env=worker_env(s["allocator"]), destinations=dict(s["peer_destinations"]),
        http_host=s["http_host"], http_port=s["http_port"] or None,
        retention_max_age_s=s["retention_days"] * 86400.0 if s["retention_days"] else None,
        retention_max_bytes=int(s["retention_max_gb"] * 1e9) if s["retention_max_gb"] else None,
    )
