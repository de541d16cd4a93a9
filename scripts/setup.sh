#!/usr/bin/env bash
# Sets up everything a fresh machine needs: libLLVM >= 16 for Dr.Jit's CPU backend,
# a virtual environment in .venv with the pinned, tested versions, and this package.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

have_llvm() {
    # Dr.Jit's LLVM backend needs libLLVM 16 or newer; 14/15 die with "Cannot select ... fmaximum".
    if [ -n "${DRJIT_LIBLLVM_PATH:-}" ] && [ -e "$DRJIT_LIBLLVM_PATH" ]; then return 0; fi
    for v in 21 20 19 18 17 16; do
        for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib/llvm-$v/lib /usr/lib64 /usr/local/lib; do
            ls "$d"/libLLVM-"$v"*.so* "$d"/libLLVM.so."$v"* >/dev/null 2>&1 && return 0
        done
    done
    return 1
}

if ! have_llvm; then
    echo "setup: no libLLVM >= 16 found; installing Debian's libllvm19"
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q libllvm19 >/dev/null
    else
        echo "setup: cannot install it here: run 'sudo apt-get install libllvm19' (or point DRJIT_LIBLLVM_PATH at a libLLVM >= 16)" >&2
        exit 1
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# torch first and exactly: a looser requirement pulls a CUDA build of several GB.
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock -e ".[dev]"
touch .venv/.installed
echo "setup: .venv ready"
