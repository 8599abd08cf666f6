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
conflicting versions of an instance waits for --resolve. Everything received is kept in SPOOL (never deleted by
zeroclick); the job queue survives crashes and restarts (SPOOL/queue.sqlite).

Connections: a peer must complete its association request (TLS handshake included) within
--association-request-seconds; at most 8 such pending connections per peer address (the oldest is closed
first); --max-associations in all and --max-associations-per-peer per address; a PDU or a C-STORE idle for
--idle-seconds ends the association; an instance over --max-instance-mb is refused (0xA700).
Exit codes: 0 stopped normally (or --status / --resolve done), 2 bad arguments.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from zeroclick.pipelines.pacs.completeness import COMPLETENESS_MODES

    p.add_argument("--spool", required=True, metavar="DIR", help="spool folder (received files + queue.sqlite)")
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


def run_from_args(args: argparse.Namespace) -> int:
    from zeroclick.pipelines.pacs.listener import ConnectionLimits, Listener, ListenerConfig, Spool

    if args.status or args.resolve:
        spool = Spool(Path(args.spool))
        try:
            if args.resolve:
                n = spool.resolve_conflicts(args.resolve, keep=args.keep)
                sys.stdout.write(json.dumps({"study": args.resolve, "resolved": n, "kept": args.keep}) + "\n")
            else:
                sys.stdout.write(json.dumps(spool.status(), indent=2) + "\n")
        finally:
            spool.close()
        return 0
    limits = ConnectionLimits(
        association_request_s=args.association_request_seconds, idle_s=args.idle_seconds,
        max_associations=args.max_associations, max_associations_per_peer=args.max_associations_per_peer,
        max_instance_bytes=int(args.max_instance_mb * (1 << 20)),
    )
    config = ListenerConfig(
        spool_dir=Path(args.spool), ae_title=args.aet, host=args.host, port=args.port,
        allowed_aets=tuple(args.allow), destination=args.send, stable_s=args.stable_seconds,
        max_wait_s=args.max_wait_minutes * 60.0, completeness=args.completeness,
        workers=max(args.workers, 1), min_free_bytes=int(args.min_free_gb * (1 << 30)), analysis=args.analysis,
        tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca, limits=limits,
    )
    Listener(config).serve_forever()
    return 0
