#!/usr/bin/env bash
# The GPU check, one command on a machine with an NVIDIA GPU (never in CI):
#   1. makes sure torch sees the GPU (installs torch's CUDA build from PyPI when it does not);
#   2. bench/gpu_check.py: 1-GPU fp16 ZeRO-2 and bf16 ZeRO-3 K-fold jobs on a deberta-v3-xsmall-shaped model
#      built from its config (about 2 minutes each), printing samples/s, MFU, skipped fp16 steps and peak GPU
#      memory, and reloading every fold folder;
#   3. the GPU test lane, `pytest -m gpu` (tests/gpu).
# Under 8 minutes in all on an A100/H100-class GPU. Usage:
#   bench/gpu_check.sh [gpu_check.py options, e.g. --epochs 1]
#   bench/gpu_check.sh --cpu-smoke     # no GPU needed: the same scripts on CPU (tiny model), lane collected only
# PY=/path/to/python picks the interpreter (default: .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
if [[ -z "${PY:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

smoke=0
for arg in "$@"; do [[ "$arg" == "--cpu-smoke" ]] && smoke=1; done

step() { printf '\n== %s (%ds)\n' "$1" "$((SECONDS - started))"; }

if [[ $smoke == 0 ]]; then
  step "GPU"
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi -L failed); use --cpu-smoke to check the scripts" >&2
    exit 2
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    # PyPI's Linux torch wheels are CUDA builds; keep the version that is installed (the CPU one).
    version=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
    spec="${TORCH_SPEC:-torch${version:+==$version}}"
    echo "torch does not see the GPU: installing $spec (CUDA build) from PyPI"
    "$PY" -m pip uninstall -q -y torch && "$PY" -m pip install -q "$spec"
    "$PY" -c 'import torch; assert torch.cuda.is_available(), "torch still sees no GPU"; print("torch", torch.__version__, "CUDA", torch.version.cuda)'
  fi
fi

step "K-fold jobs (bench/gpu_check.py $*)"
timeout 600 "$PY" bench/gpu_check.py "$@"

step "GPU test lane (pytest -m gpu)"
if [[ $smoke == 1 ]]; then
  # No GPU: prove the lane is collected and selected; running it needs CUDA (or CKPT_TUI_GPU_LANE_ON_CPU=1).
  "$PY" -m pytest -q -p no:cacheprovider -m gpu --collect-only tests/gpu | tail -n 1
else
  timeout 300 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs tests/gpu
fi
step "done"
