"""Pretrained weights: manifest (+ JSON schema), model cards, and the cache store.

Fetched files live in a cache (``$ZEROCLICK_WEIGHTS_DIR``, default ``~/.cache/zeroclick/weights``), never
in git; ``zeroclick weights fetch`` fills it, analysis only reads it.
"""

import logging

from zeroclick.weights.store import (
    ENV_CACHE,
    FetchRecord,
    LoadedModel,
    ModelEntry,
    ModelStatus,
    builtin_entries,
    cache_dir,
    convert_onnx,
    entries,
    fetch,
    import_weights,
    load_model,
    onnx_cache_path,
    resolve,
    sha256_file,
    status,
    verify,
)

logging.getLogger("zeroclick").addHandler(logging.NullHandler())

__all__ = [
    "ENV_CACHE",
    "FetchRecord",
    "LoadedModel",
    "ModelEntry",
    "ModelStatus",
    "builtin_entries",
    "cache_dir",
    "convert_onnx",
    "entries",
    "fetch",
    "import_weights",
    "load_model",
    "onnx_cache_path",
    "resolve",
    "sha256_file",
    "status",
    "verify",
]
