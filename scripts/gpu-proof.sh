#!/usr/bin/env bash
# gpu-proof.sh — the CUDA backend's checks on a GPU machine, in one run inside a time budget:
# the CUDA kernel, golden and bandwidth tests, then `candor bench` beside HF transformers on the
# same GPU, dummy bf16 weights of real model shapes and the GGUF test models refilled from their
# skeletons (same prompt and decode lengths, same batch sizes), most important first, so a run
# cut short still says the most.
#
# Usage (on the GPU machine, from the repository root):
#   bash scripts/gpu-proof.sh [KIT_DIR] [OUT_DIR]
#     KIT_DIR  what scripts/gpu-kit.sh built (default .gpu-kit)
#     OUT_DIR  where the log and result JSONs go (default $OUT, else gpu-proof-out)
# Env: GPU_PROOF_BUDGET_S (default 400): seconds for the whole run; a step that would start
#      with under 20 s left is skipped, and each step's own limit is cut to what is left.
#      GPU_PROOF_REPS (default 3): timed repetitions per test.
#      GPU_PROOF_PYTHON (default python3): the Python with torch and transformers.
#      GPU_PROOF_PARTS (default all, in this order): which parts to run, space-separated:
#        tests (kernel, golden, bandwidth), llama-8b (candor and transformers), matvec (8B decode
#        with matvec.cu and with cuBLAS alone), gguf (each GGUF skeleton of the kit filled back:
#        candor on it, with the README's perplexity on the GPU and on the CPU; transformers on
#        its shapes in bf16), qwen2.5-0.5b, qwen2.5-7b, split (8B
#        decode after 4096 tokens with and without the attention's key splits), gpt-oss-20b (the
#        mixture of experts with sinks, candor and transformers), gpt-oss-20b-mxfp4 (candor with
#        the experts in MXFP4), ptx (the kernel tests on their PTX). A rerun names the parts the first run's budget skipped.
#
# Writes OUT_DIR/proof.log (everything, with a summary at the end) and OUT_DIR/results.tar: one
# JSON per benchmark named like benches/results/ (…-LABEL.json, LABEL from the GPU's name: h100,
# h200…), packed because the device tool brings back 8 files at most.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
kit="${1:-.gpu-kit}"
out="${2:-${OUT:-gpu-proof-out}}"
budget="${GPU_PROOF_BUDGET_S:-400}"
reps="${GPU_PROOF_REPS:-3}"
parts=" ${GPU_PROOF_PARTS:-tests llama-8b matvec gguf qwen2.5-0.5b qwen2.5-7b split gpt-oss-20b gpt-oss-20b-mxfp4 ptx} "
start=$SECONDS
results=/tmp/candor-proof-results
rm -rf "$results" && mkdir -p "$results" "$out"
trap 'tar -C "$results" -cf "$out/results.tar" .' EXIT
exec > >(tee "$out/proof.log") 2>&1
summary=()

# part NAME: whether GPU_PROOF_PARTS asks for it.
part() { [[ $parts == *" $1 "* ]]; }

# step NAME LIMIT_S COMMAND...: run with a timeout inside the budget; record rc and seconds.
step() {
  local name=$1 limit=$2 left rc t0
  shift 2
  left=$((budget - (SECONDS - start)))
  if ((left < 20)); then
    echo "=== $name: SKIPPED (budget spent)"
    summary+=("$name: skipped (budget)")
    return
  fi
  ((limit > left)) && limit=$left
  echo "=== $name (limit ${limit}s, $((SECONDS - start))s into the run)"
  t0=$SECONDS
  timeout --kill-after=5 "$limit" "$@"
  rc=$?
  echo "=== $name: rc=$rc in $((SECONDS - t0))s"
  summary+=("$name: rc=$rc $((SECONDS - t0))s")
}

bin=/tmp/candor-gpu-kit
rm -rf "$bin" && mkdir -p "$bin"
# Python's tarfile reads .tar.xz wherever python3 is, xz-utils or not.
if ! python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
  "$kit/bin.tar.xz" "$bin"; then
  echo "no kit at $kit/bin.tar.xz: build it with scripts/gpu-kit.sh and carry $kit"
  exit 2
fi
echo "kit built from $(tr '\n' ' ' <"$bin/COMMIT")"
gpu=(bash scripts/gpu-run.sh)
py="${GPU_PROOF_PYTHON:-python3}"
# The kit's copy of tests/fixtures (carried there, the tree's moved aside: gpu-kit.sh).
fixtures="$PWD/tests/fixtures"
if [[ -f $kit/fixtures.tar.xz ]]; then
  fixtures=/tmp/candor-gpu-fixtures
  rm -rf "$fixtures" && mkdir -p "$fixtures"
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
    "$kit/fixtures.tar.xz" "$fixtures"
  fixtures="$fixtures/fixtures"
fi
export CANDOR_FIXTURES="$fixtures" CANDOR_REQUIRE_GPU=1 PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem \
  --format=csv || true
gpu_name="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
label="$(echo "$gpu_name" | grep -oiE '[A-Z][0-9]{2,4}[A-Z]?' | head -1 | tr 'A-Z' 'a-z')"
label="${label:-gpu}"
echo "label: $label"

step "devices" 60 "${gpu[@]}" "$bin/candor" devices
if part tests; then
  step "cuda_kernels" 120 "${gpu[@]}" "$bin/cuda_kernels" --nocapture
  step "cuda_golden" 120 "${gpu[@]}" "$bin/cuda_golden" --nocapture
  step "cuda_bandwidth" 60 "${gpu[@]}" "$bin/cuda_bandwidth" --nocapture
fi

# candor then transformers on each shape; batch 1, 8, 32; prompt 512, decode 128. candor also
# profiles one extra pass of each test (op_profile in its JSON).
bench_pair() { # SHAPE_ARGS HF_SHAPES NAME LIMIT
  local args=$1 hf=$2 name=$3 limit=$4
  # shellcheck disable=SC2086  # SHAPE_ARGS is a word list
  step "candor $name" "$limit" "${gpu[@]}" "$bin/candor" bench --backend cuda --load-format dummy $args \
    -p 512 -n 128 -b 1,8,32 -r "$reps" --profile-ops \
    --json "$results/candor-bench-dummy-$name-$label.json"
  step "transformers $name" "$limit" "$py" benches/hf_transformers_bench.py --shapes "$hf" \
    -p 512 -n 128 -b 1,8,32 -r "$reps" \
    --json "$results/hf-transformers-dummy-$name-$label.json"
}

# 8B decode variants (64 tokens after DEPTH, batches BATCHES), tables in proof.log (the device
# tool brings back 8 files at most: the log and the six JSONs of the pairs).
decode_8b() { # NAME DEPTH BATCHES ENV...
  local name=$1 depth=$2 batches=$3
  shift 3
  step "candor llama-8b d$depth $name" 60 env "$@" "${gpu[@]}" "$bin/candor" bench --backend cuda \
    --load-format dummy --arch llama --size 8b -p 0 -n 64 -d "$depth" -b "$batches" -r 2
}

part llama-8b && bench_pair "--arch llama --size 8b" llama-8b llama-8b 150
# Decode's dense products: matvec.cu (with the norm and GLU inside), then cuBLAS alone
# (CANDOR_CUDA_MATMUL=cublas), to measure what the kernel buys.
if part matvec; then
  decode_8b matvec 512 1,8 CANDOR_CUDA_MATMUL=auto
  decode_8b cublas 512 1,8 CANDOR_CUDA_MATMUL=cublas
fi
# The GGUF test models (Q4_K_M: candle's quantized matmuls), refilled from the kit's skeletons:
# their real layout, tokenizer and quantization types, weights tiled from a few real blocks of
# each tensor (the speed is that of the real files; the tokens mean nothing). Named
# `<model>.random-weights`; transformers runs the same shapes in bf16 under that name.
if part gguf; then
  for skel in "$kit"/models/*.skel.xz; do
    [[ -f $skel ]] || { summary+=("gguf: no skeletons in $kit/models"); break; }
    name="$(basename "$skel" .skel.xz).random-weights"
    case $name in
      qwen2.5-*0.5b*) hf=qwen2.5-0.5b ;;
      gemma-3-270m*) hf=gemma3-270m ;;
      *) hf= ;;
    esac
    step "fill $name" 60 python3 scripts/gguf-skeleton.py fill "$skel" "/tmp/$name.gguf"
    # With the perplexity of the README on the GPU, and then on this machine's CPU: the same
    # quantized layout computed by both backends must give the same numbers up to rounding
    # (the tiled weights make the text unlikely, not the comparison meaningless).
    step "candor $name" 90 "${gpu[@]}" "$bin/candor" bench --backend cuda -m "/tmp/$name.gguf" \
      -p 512 -n 128 -b 1,8,32 -r "$reps" --profile-ops \
      --perplexity README.md --perplexity-chunks 4 \
      --json "$results/candor-bench-$name-$label.json"
    # A minimal bench on the CPU: its document carries the perplexity, so `candor report`
    # compares the two backends in its Accuracy section.
    step "candor $name perplexity on the CPU" 60 "$bin/candor" bench -m "/tmp/$name.gguf" \
      -p 16 -n 4 -r 1 --perplexity README.md --perplexity-chunks 4 \
      --json "$results/candor-bench-$name-$label-host-cpu.json"
    rm -f "/tmp/$name.gguf"
    [[ -n $hf ]] && step "transformers $name" 90 "$py" benches/hf_transformers_bench.py \
      --shapes "$hf" --name "$name" -p 512 -n 128 -b 1,8,32 -r "$reps" \
      --json "$results/hf-transformers-$name-$label.json"
  done
fi
part qwen2.5-0.5b && bench_pair "--arch qwen2.5 --size 0.5b" qwen2.5-0.5b qwen2.5-0.5b 90
part qwen2.5-7b && bench_pair "--arch qwen2.5 --size 7b" qwen2.5-7b qwen2.5-7b 120
# Long-context decode of one sequence: attention with its keys split across blocks, then the
# one-pass kernel alone (CANDOR_CUDA_ATTENTION=simple), to measure what the split buys.
if part split; then
  decode_8b split 4096 1 CANDOR_CUDA_ATTENTION=auto
  decode_8b one-pass 4096 1 CANDOR_CUDA_ATTENTION=simple
fi
# gpt-oss-20b's shapes (42 GB in bf16): experts routed on the host, sinks in the attention.
part gpt-oss-20b && bench_pair "--arch gpt-oss --size 20b" gpt-oss-20b gpt-oss-20b 150
# The same shapes as gpt-oss is published: experts in MXFP4 (mxfp4.cu: 17 bytes a block of 32 read
# by the decode product, expanded for cuBLAS at prefill), the rest bf16. candor only: transformers'
# MXFP4 path needs the triton kernels package, so its bf16 run above is the comparison.
part gpt-oss-20b-mxfp4 && step "candor gpt-oss-20b-mxfp4" 150 "${gpu[@]}" "$bin/candor" bench \
  --backend cuda --load-format dummy --arch gpt-oss --size 20b --dummy-dtype mxfp4 \
  -p 512 -n 128 -b 1,8,32 -r "$reps" --profile-ops \
  --json "$results/candor-bench-dummy-gpt-oss-20b-mxfp4-$label.json"
# The kernels once more from their PTX (the fallback of a cubin the driver refuses, and what
# GPUs newer than sm_90 run), JIT-compiled by the driver.
part ptx && step "cuda_kernels (PTX)" 120 env CANDOR_CUDA_KERNELS=ptx "${gpu[@]}" "$bin/cuda_kernels"

echo
echo "=== summary ($((SECONDS - start))s of ${budget}s)"
printf '  %s\n' "${summary[@]}"
ls -l "$results"
