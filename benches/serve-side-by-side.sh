#!/usr/bin/env bash
# serve-side-by-side.sh — `candor serve` and llama.cpp's `llama-server` on the same GGUF file and
# threads, loaded one after the other in one run by the same client (`candor bench --serve`:
# streaming clients, one fixed prompt unless UNIQUE=1, `ignore_eos`), alternating for ROUNDS
# rounds.
#
# Usage: benches/serve-side-by-side.sh LLAMA_SERVER LABEL [THREADS] [CONCURRENCY] [ROUNDS]
#   LLAMA_SERVER  path to a llama-server built locally (never committed)
#   LABEL         machine label for the result file names, e.g. xeon-2t
#   defaults: THREADS=2 CONCURRENCY=1,16 ROUNDS=2; MODEL=qwen2.5-0.5b, TOKENS=64, REQUESTS=2
#   UNIQUE=1: each request's prompt starts with a tag of its own (`--unique-prompts`), so
#   neither server's prefix cache serves it and TTFT counts the whole prefill; the result
#   files then end in -unique.
# llama-server runs with one slot per client of the highest level (-np), continuous batching
# (-cb, its default) and a context of 512 tokens per slot. Writes
# benches/results/serve-MODEL-{candor,llama-server}-LABEL-rN.json. Run it on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_SERVER=${1:?usage: serve-side-by-side.sh LLAMA_SERVER LABEL [THREADS] [CONCURRENCY] [ROUNDS]}
LABEL=${2:?label}
THREADS=${3:-2}
CONCURRENCY=${4:-1,16}
ROUNDS=${5:-2}
MODEL=${MODEL:-qwen2.5-0.5b}
TOKENS=${TOKENS:-64}
REQUESTS=${REQUESTS:-2}
PORT=${PORT:-18181}
UNIQUE=${UNIQUE:-0}
unique=()
suffix=
if [ "$UNIQUE" = 1 ]; then unique=(--unique-prompts); suffix=-unique; fi
CANDOR=target/release/candor
[ -x "$CANDOR" ] || cargo build --release --bin candor
file=$("$CANDOR" pull "$MODEL" | tail -1)
[ -f "$file" ] || { echo "cannot find the $MODEL file (got '$file')" >&2; exit 1; }
slots=$(tr ',' '\n' <<<"$CONCURRENCY" | sort -n | tail -1)
out=benches/results
mkdir -p "$out"
server_pid=
stop() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; server_pid=; }
trap stop EXIT

measure() { # NAME: wait for the server, load it, stop it
  local name=$1 round=$2
  for _ in $(seq 300); do
    curl -sf "localhost:$PORT/health" >/dev/null && break
    sleep 1
  done
  echo "== $name, round $round"
  "$CANDOR" bench --serve "http://localhost:$PORT" --concurrency "$CONCURRENCY" \
    --requests-per-client "$REQUESTS" -n "$TOKENS" --server-label "$name, $THREADS threads" \
    "${unique[@]}" --json "$out/serve-$MODEL-$name-$LABEL-r$round$suffix.json" 2>/dev/null |
    grep -v '^wrote'
  stop
}

for round in $(seq "$ROUNDS"); do
  "$CANDOR" serve --model "$file" --threads "$THREADS" --port "$PORT" >/dev/null 2>&1 &
  server_pid=$!
  measure candor "$round"
  "$LLAMA_SERVER" -m "$file" -t "$THREADS" -np "$slots" -cb -c $((512 * slots)) \
    --port "$PORT" >/dev/null 2>&1 &
  server_pid=$!
  measure llama-server "$round"
done
