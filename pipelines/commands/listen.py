"""``zeroclick listen``: a zero-click DICOM Storage SCP (receive -> analyse when complete -> send results back)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Receive studies by C-STORE, analyse each study once no new image arrived for --stable-seconds, and send
the results (SEG, SR, PDF) to --send by C-STORE. Everything received is kept in SPOOL (never deleted by
zeroclick); the job queue survives crashes and restarts (SPOOL/queue.sqlite).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--status", action="store_true", help="print the queue state of SPOOL as JSON and exit")


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
    from zeroclick.pipelines.pacs.listener import Listener, ListenerConfig, Spool

    if args.status:
        spool = Spool(Path(args.spool))
        sys.stdout.write(json.dumps(spool.status(), indent=2) + "\n")
        spool.close()
        return 0
    config = ListenerConfig(
        spool_dir=Path(args.spool), ae_title=args.aet, host=args.host, port=args.port,
        allowed_aets=tuple(args.allow), destination=args.send, stable_s=args.stable_seconds,
        workers=max(args.workers, 1), min_free_bytes=int(args.min_free_gb * (1 << 30)), analysis=args.analysis,
        tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca,
    )
    Listener(config).serve_forever()
    return 0
