#!/usr/bin/env bash
# The GPU table of docs/odometry.md: TensorRT FP16 engines of the shipped model, built here, and the end-to-end
# Pipeline table (per stage, FPS, memory) beside PyTorch on CUDA and the CPU peers, in one run.
#
#   bash benchmarks/gpu.sh [OUT_DIR]          # default OUT_DIR: outputs/gpu (the tables and the engines' parity)
#
# Needs a CUDA GPU and a Python (PYTHON, default .venv/bin/python, else python3) with this package, a CUDA build
# of PyTorch and the matching torch-tensorrt; it checks each first and exits 2 naming what is missing, so a machine
# without them fails in seconds, not after a build. Nothing is downloaded. Steps (each prints a table):
#   1. the machine: GPU, driver, PyTorch / CUDA / torch-tensorrt versions;
#   2. export parity: the TensorRT FP16 engine of each network against PyTorch FP32 at 640x192 and 320x96
#      (python -m priordepth_core.export --format tensorrt --precision fp16, which exits non-zero outside tolerance);
#   3. benchmarks/pipeline.py on cuda: tensorrt fp16 and fp32, torch fp32, at 640x192 and 320x96, 300 frames
#      after 50 warm-up frames, plus the OpenCV ORB + 5-point chain on the CPU.
# Goal (issue 18): TensorRT FP16 at 640x192 >= 300 FPS end to end. The pose solve stays on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-outputs/gpu}
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
mkdir -p "$OUT_DIR"

echo "== 1. machine"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi >/dev/null 2>&1; then
  echo "no NVIDIA GPU: nvidia-smi is missing or fails" >&2; exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - <<'EOF' || exit 2
import sys
try:
    import torch
except ImportError:
    sys.exit("PyTorch is not installed for this Python")
if not torch.cuda.is_available():
    sys.exit(f"PyTorch {torch.__version__} sees no CUDA GPU (a CPU-only build?)")
try:
    import torch_tensorrt
except ImportError:
    sys.exit(f"torch-tensorrt is missing (pip install torch-tensorrt matching PyTorch {torch.__version__})")
import priordepth_core  # noqa: F401  (the package itself)
print(f"PyTorch {torch.__version__}, CUDA {torch.version.cuda}, torch-tensorrt {torch_tensorrt.__version__}, "
      f"{torch.cuda.get_device_name(0)}")
EOF

echo "== 2. export parity (TensorRT FP16 vs PyTorch FP32)"
for size in "192 640" "96 320"; do
  set -- $size
  "$PY" -m priordepth_core.export --format tensorrt --precision fp16 --device cuda --height "$1" --width "$2" \
    --out "$OUT_DIR/priordepth_${2}x${1}_fp16.ep" | tee "$OUT_DIR/parity_${2}x${1}.md"
done

echo "== 3. end to end"
OMP_NUM_THREADS=1 "$PY" benchmarks/pipeline.py --backends tensorrt torch --precisions auto fp32 --device cuda \
  --sizes 640x192 320x96 --threads 1 --concurrent off --frames 350 --warmup 50 | tee "$OUT_DIR/pipeline.md"
echo "tables in $OUT_DIR"
