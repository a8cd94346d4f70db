#!/usr/bin/env bash
# perplexity-side-by-side.sh — candor perplexity and llama.cpp's llama-perplexity on the same GGUF
# files and the same text, same context and threads, one after the other in one run, with each
# process's wall time and peak resident memory. The two must agree up to rounding: a number
# apart means one of them computes (or tokenizes) the model differently.
#
# Usage: benches/perplexity-side-by-side.sh LLAMA_PERPLEXITY TEXT [CTX] [CHUNKS] [THREADS]
#   LLAMA_PERPLEXITY  path to a llama-perplexity built locally (e.g. from the llama-cpp-python
#                     sdist's vendor/llama.cpp: cmake --build build --target llama-perplexity)
#   TEXT              a UTF-8 text file (e.g. wikitext-2's wiki.test.raw)
#   defaults: CTX=512 CHUNKS=12 THREADS=2
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_PERPLEXITY=${1:?usage: perplexity-side-by-side.sh LLAMA_PERPLEXITY TEXT [CTX] [CHUNKS] [THREADS]}
TEXT=${2:?text file}
CTX=${3:-512}
CHUNKS=${4:-12}
THREADS=${5:-2}
CANDOR=target/release/candor
[ -x "$CANDOR" ] || cargo build --release --bin candor
MODELS_DIR=${CANDOR_MODELS:-$HOME/.cache/candor/models}
declare -A FILES=(
  [gemma3-270m]=gemma-3-270m-q4_k_m.gguf
  [qwen2.5-0.5b]=qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
)
for model in qwen2.5-0.5b gemma3-270m; do
  file="$MODELS_DIR/${FILES[$model]}"
  "$CANDOR" pull "$model" >/dev/null
  echo "== $model, ctx $CTX, $CHUNKS chunks, $THREADS threads"
  /usr/bin/time -f "candor: %e s wall, peak RSS %M KiB" "$CANDOR" perplexity --offline \
    --model "$file" -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" --threads "$THREADS" 2>&1 \
    | grep -E '^PPL|candor:'
  # llama-perplexity reads its file as data (control-token text stays text), as candor does.
  /usr/bin/time -f "llama.cpp: %e s wall, peak RSS %M KiB" "$LLAMA_PERPLEXITY" -m "$file" \
    -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" 2>&1 \
    | grep -E 'Final estimate|llama.cpp:'
done
