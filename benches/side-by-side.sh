#!/usr/bin/env bash
# side-by-side.sh — candor bench and llama.cpp's llama-bench on the same GGUF files, same
# threads, one after the other in one run, with each process's peak resident memory.
#
# Usage: benches/side-by-side.sh LLAMA_BENCH LABEL [THREADS] [PROMPTS] [GENS] [REPS]
#   LLAMA_BENCH  path to a llama-bench built locally (e.g. from the llama-cpp-python sdist's
#                vendor/llama.cpp with -DGGML_NATIVE=ON; never committed)
#   LABEL        machine label for the result file names, e.g. xeon-2t
#   defaults: THREADS=2 PROMPTS=128,512 GENS=64,128 REPS=3
# Writes benches/results/{candor,llama}-bench-MODEL-LABEL.json and prints both tables plus the
# peak RSS (GNU time's %M) of each run. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_BENCH=${1:?usage: side-by-side.sh LLAMA_BENCH LABEL [THREADS] [PROMPTS] [GENS] [REPS]}
LABEL=${2:?label}
THREADS=${3:-2}
PROMPTS=${4:-128,512}
GENS=${5:-64,128}
REPS=${6:-3}
CANDOR=target/release/candor
[ -x "$CANDOR" ] || cargo build --release --bin candor
MODELS_DIR=${CANDOR_MODELS:-$HOME/.cache/candor/models}
declare -A FILES=(
  [gemma3-270m]=gemma-3-270m-q4_k_m.gguf
  [qwen2.5-0.5b]=qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
)
out=benches/results
mkdir -p "$out"
for model in gemma3-270m qwen2.5-0.5b; do
  file="$MODELS_DIR/${FILES[$model]}"
  "$CANDOR" pull "$model" >/dev/null
  echo "== $model, $THREADS threads"
  /usr/bin/time -f "candor peak RSS: %M KiB" "$CANDOR" bench -m "$model" -p "$PROMPTS" \
    -n "$GENS" -r "$REPS" -t "$THREADS" --json "$out/candor-bench-$model-$LABEL.json" 2>&1 \
    | grep -v '^wrote\|^\s*$' || true
  /usr/bin/time -f "llama.cpp peak RSS: %M KiB" "$LLAMA_BENCH" -m "$file" -p "$PROMPTS" \
    -n "$GENS" -r "$REPS" -t "$THREADS" -o json > "$out/llama-bench-$model-$LABEL.json" 2> >(grep 'peak RSS' >&2)
  python3 - "$out/llama-bench-$model-$LABEL.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    test = f"pp{r['n_prompt']}" if r['n_gen'] == 0 else f"tg{r['n_gen']}"
    print(f"| llama.cpp | {r['n_threads']} | {test} | {r['avg_ts']:.2f} ± {r['stddev_ts']:.2f} |")
PY
done
