#!/usr/bin/env bash
# The GPU checks, in one run: GPU faiss in a venv, the tests with GPU paths, and a 1M-vector
# index build on CPU against GPU (bench/gpu_build.py prints the table).
#
#   bash bench/gpu_check.sh                          # venv .venv-gpu, installs from PyPI
#   VENV=/path/venv SKIP_INSTALL=1 bash bench/gpu_check.sh   # a venv that already has GPU faiss
#   WHEELHOUSE=/path/wheels bash bench/gpu_check.sh  # offline: pip install from those wheels
#   N=200000 bash bench/gpu_check.sh                 # a smaller build
#
# GPU faiss is faiss-gpu-cu12 (the `gpu` extra of pyproject.toml). Its wheel links the CUDA 12
# runtime and cuBLAS from the nvidia-cuda-runtime-cu12 and nvidia-cublas-cu12 wheels it
# requires (no local CUDA toolkit; a driver new enough for the CUDA 12.x pip resolves), and
# needs numpy>=2. It provides the same `faiss` module as faiss-cpu, so faiss-cpu is removed
# first: with both installed, whichever was installed last wins. Its wheels are built for
# compute capability 7.0-8.9 (Volta to Ada); on a newer GPU (Hopper 9.0, Blackwell) it may
# fail to run kernels: this script prints the capability and the GPU tests tell.
#
# Without a GPU it says so, skips the GPU tests (they skip themselves) and runs the CPU half
# of the build benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv-gpu}
N=${N:-1000000}
PY="$VENV/bin/python"

if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
    [[ -x "$PY" ]] || python3 -m venv "$VENV"
    pip_args=(--quiet)
    [[ -n "${WHEELHOUSE:-}" ]] && pip_args+=(--no-index --find-links "$WHEELHOUSE")
    "$PY" -m pip install "${pip_args[@]}" -e '.[dev]'
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
        "$PY" -m pip uninstall --quiet -y faiss-cpu || true
        "$PY" -m pip install "${pip_args[@]}" 'faiss-gpu-cu12>=1.8'
    else
        echo "no NVIDIA GPU (nvidia-smi finds none): keeping faiss-cpu, CPU half only"
    fi
fi

echo "== devices"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv
else
    echo "no NVIDIA GPU visible"
fi
"$PY" - <<'EOF'
import faiss
gpus = faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0
print(f"faiss {faiss.__version__}: {gpus} GPU(s)" + ("" if gpus else " (CPU half only)"))
EOF

echo "== tests with GPU paths"
# test_ann's GPU build test skips itself without a GPU; the trainer's CUDA checkpoint tests
# run both ways.
"$PY" -m pytest -q -rs tests/indexing/test_ann.py tests/training/test_trainer.py \
    -k "gpu or cuda" || echo "GPU TESTS FAILED"

echo "== index build, CPU against GPU ($N x 384)"
OMP_WAIT_POLICY=PASSIVE "$PY" bench/gpu_build.py --n "$N"
