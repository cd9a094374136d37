#!/usr/bin/env bash
# Checks and numbers that need a CUDA GPU, for the day one is available.
#
#   bash bench/gpu.sh [outdir]        # from the repository root, skimgcls installed
#
# 1. the CUDA-marked tests (pytest -m cuda): device and precision resolution,
#    pinned path batches, CPU/GPU agreement, models trained on the GPU that
#    load on the CPU...;
# 2. a short benchmark on the GPU (bench/run.py --device cuda --quick, then a
#    short real run), and the 2-process data-parallel test (torchrun, gloo).
# Everything printed goes to <outdir>/gpu-<date>.log (default bench/results);
# the benchmark's tables go next to it. Paste the log in the performance guide.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench/results}"
mkdir -p "$OUT"
LOG="$OUT/gpu-$(date +%Y%m%d-%H%M).log"
PY="${PYTHON:-python}"
exec > >(tee "$LOG") 2>&1

"$PY" - <<'PYEOF'
import torch, skimgcls
if not torch.cuda.is_available():
    raise SystemExit("bench/gpu.sh: torch sees no CUDA GPU; nothing to check here.")
print("skimgcls", skimgcls.__version__, "torch", torch.__version__,
      "| GPUs:", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
      "| bf16:", torch.cuda.is_bf16_supported())
PYEOF

echo "== CUDA-marked tests"
"$PY" -m pytest -m cuda -q -p no:cacheprovider -ra tests

echo "== GPU-readiness tests (mocks; must pass here too)"
"$PY" -m pytest -q -p no:cacheprovider tests/test_gpu_readiness.py

echo "== 2-process data-parallel test (gloo on the CPU, as in the suite)"
"$PY" -m pytest -q -p no:cacheprovider tests/test_distributed.py

echo "== benchmark (quick smoke, then a short run)"
"$PY" bench/run.py --device cuda --quick --outdir "$OUT" --out gpu-quick
"$PY" bench/run.py --device cuda --repeats 1 --epochs 2 --skip onnx,stream \
    --outdir "$OUT" --out gpu
echo "log: $LOG"
