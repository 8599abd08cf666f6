#!/usr/bin/env bash
# One command for a GPU machine: both pipelines (and the DICOM scan) at full size, one JSON file out.
#
#   scripts/gpu_bench.sh [OUT_DIR]
#
# Creates .venv with the CUDA build of torch (`make install` picks it when nvidia-smi exists), fetches the
# cardiac weights if they are not cached, then runs, each at its default (full) size:
#   zeroclick bench dicom-scan --images 3000   (header scan of a 3,000-image exam)
#   zeroclick bench cmr                         (whole generated exam through the cardiac pipeline)
#   zeroclick bench slide                       (20,000^2 generated slide through the histology pipeline)
# and writes OUT_DIR/<name>.json per benchmark, OUT_DIR/nvidia-smi.csv, and OUT_DIR/gpu_bench.json with all
# of them plus the GPU. Environment: PYTHON=/path/to/python to use an existing interpreter that already has
# zeroclick importable (no install), BENCHES="cmr slide" to choose, EXTRA_ARGS_<name> for more arguments
# (e.g. EXTRA_ARGS_slide="--size 50000x50000"), SKIP_FETCH=1 on a machine without network (carry the weights
# cache and set ZEROCLICK_WEIGHTS_DIR), ALLOW_CPU=1 to try the script on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu-bench-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
BENCHES="${BENCHES:-dicom-scan cmr slide}"

if [ -z "${PYTHON:-}" ]; then
  make install >/dev/null
  PYTHON=.venv/bin/python
fi
ALLOW_CPU="${ALLOW_CPU:-0}" "$PYTHON" - <<'PY'
import os, sys, torch
if not torch.cuda.is_available() and os.environ["ALLOW_CPU"] != "1":
    sys.exit("gpu_bench.sh: torch sees no CUDA device (install the CUDA build of torch, check nvidia-smi)")
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (ALLOW_CPU=1)"
print(f"GPU: {gpu}, torch {torch.__version__}", file=sys.stderr)
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
  > "$OUT/nvidia-smi.csv" || true

# Weights are needed by the cardiac benchmark; nothing downloads at analysis time.
if ! "$PYTHON" -m zeroclick.pipelines.cli weights verify >/dev/null 2>&1; then
  if [ "${SKIP_FETCH:-0}" = 1 ] || ! "$PYTHON" -m zeroclick.pipelines.cli weights fetch; then
    echo "gpu_bench.sh: cardiac weights unavailable; the cmr benchmark will say so" >&2
  fi
fi

status=0
for name in $BENCHES; do
  var="EXTRA_ARGS_${name//-/_}"
  extra=${!var:-}
  if [ "$name" = dicom-scan ]; then extra="--images 3000 $extra"; fi
  echo "== zeroclick bench $name $extra" >&2
  # shellcheck disable=SC2086
  if ! "$PYTHON" -m zeroclick.pipelines.cli bench "$name" --json --out "$OUT/$name.json" $extra >/dev/null; then
    echo "gpu_bench.sh: benchmark $name failed" >&2
    status=1
  fi
done

"$PYTHON" - "$OUT" $BENCHES <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
record = {"benchmarks": {}}
for name in sys.argv[2:]:
    f = out / f"{name}.json"
    record["benchmarks"][name] = json.loads(f.read_text()) if f.exists() else {"error": "did not finish"}
smi = out / "nvidia-smi.csv"
record["nvidia_smi"] = smi.read_text().strip() if smi.exists() else None
(out / "gpu_bench.json").write_text(json.dumps(record, indent=2) + "\n")
print(out / "gpu_bench.json")
PY
exit $status
