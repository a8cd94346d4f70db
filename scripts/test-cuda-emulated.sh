#!/usr/bin/env bash
# test-cuda-emulated.sh — run the CUDA kernels' source on the CPU (kernels/cuda/emulation: each
# CUDA thread a fiber) against references, where there is no GPU: each *_test.cpp compiled as
# C++20 by the host compiler with the CUDA headers (the minimal toolchain of
# scripts/cuda-toolchain.sh is enough: no driver, no nvcc run). Half a minute on 2 cores; CI
# runs it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z ${CUDA_HOME:-} ]]; then
  bash scripts/cuda-toolchain.sh install --minimal >&2
  eval "$(bash scripts/cuda-toolchain.sh env)"
fi
cxx="${CXX:-c++}"
# A C++20 compiler (std::atomic_ref: GCC 10+); Debian's g++ where none is installed.
if ! command -v "$cxx" >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq g++ >/dev/null
  cxx=g++
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for test in kernels/cuda/emulation/*_test.cpp; do
  echo "== $test" >&2
  "$cxx" -std=c++20 -O2 -w -I"$CUDA_HOME/include" -Ikernels/cuda/emulation \
    -o "$out/test" "$test"
  "$out/test"
done
