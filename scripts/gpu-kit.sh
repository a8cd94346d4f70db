#!/usr/bin/env bash
# gpu-kit.sh — build here (no GPU needed) everything scripts/gpu-proof.sh runs on a GPU machine:
# the release `candor` with `--features cuda` and the CUDA test binaries (cuda_kernels,
# cuda_golden, cuda_bandwidth), debug info stripped, packed into one xz archive.
#
# Usage:  scripts/gpu-kit.sh [KIT_DIR]        (default: .gpu-kit, ignored by git)
#
# The device tool copies the working tree plus the paths named in `carry`, 64 MiB in all, and
# the binaries are ~150 MB each with debug info: stripped and compressed they fit. The real GGUF
# test models (250 and 490 MB) do not: the kit holds their skeletons (KIT_DIR/models/*.skel.xz,
# ~2 MB each: header, tokenizer, tensor layout and a few blocks of each tensor;
# scripts/gguf-skeleton.py), which the proof fills back into GGUFs of the same layout with
# weights tiled from those blocks, for models found in ${CANDOR_MODELS:-~/.cache/candor/models}
# (scripts/fetch-models.sh, or `candor pull`). The test fixtures (tests/fixtures, ~47 MB, most
# of the working tree) travel in the kit too, xz-compressed to ~12 MB (KIT_DIR/fixtures.tar.xz):
# tree and kit together no longer fit the 64 MiB, so the device call is made with tests/fixtures
# moved out of the tree (`mv tests/fixtures /tmp/candor-fixtures-away`, afterwards `mv` it back
# or `git checkout -- tests/fixtures`), and gpu-proof.sh unpacks the kit's copy. Needs the full
# CUDA toolchain (scripts/cuda-toolchain.sh install) to link.
# Builds in target-cuda/ so the CPU build in target/ stays as it is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
kit="${1:-.gpu-kit}"

bash scripts/cuda-toolchain.sh install >&2
eval "$(bash scripts/cuda-toolchain.sh env)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-cuda}"

cargo build --release --features cuda --bin candor
tests_json="$(mktemp)"
trap 'rm -f "$tests_json"' EXIT
cargo test --release --features cuda --no-run --message-format=json \
  --test cuda_kernels --test cuda_golden --test cuda_bandwidth >"$tests_json"

stage="$(mktemp -d)"
trap 'rm -rf "$stage" "$tests_json"' EXIT
cp "$CARGO_TARGET_DIR/release/candor" "$stage/candor"
# Test executables as cargo reports them; named without their hash so the proof script can
# call them by name.
python3 - "$tests_json" "$stage" <<'EOF'
import json, shutil, sys
found = {}
for line in open(sys.argv[1]):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") == "compiler-artifact" and msg.get("profile", {}).get("test") \
            and msg.get("executable"):
        found[msg["target"]["name"]] = msg["executable"]
want = ["cuda_kernels", "cuda_golden", "cuda_bandwidth"]
missing = [w for w in want if w not in found]
if missing:
    sys.exit(f"cargo did not report test executables for {missing}")
for name in want:
    shutil.copy(found[name], f"{sys.argv[2]}/{name}")
EOF
strip --strip-debug "$stage"/*
git rev-parse HEAD >"$stage/COMMIT"
git diff --quiet HEAD -- src models kernels Cargo.toml Cargo.lock || echo dirty >>"$stage/COMMIT"

rm -rf "$kit"
mkdir -p "$kit/models"
# The four executables embed the same CUDA kernels: one LZMA dictionary spanning the whole tar
# (one thread: blocks would split it) stores them once, 300 MB in 16 MB instead of 37.
tar -C "$stage" -cf - . | xz -T1 --lzma2=preset=6,dict=320MiB >"$kit/bin.tar.xz"
ls -l "$stage" >&2
models="${CANDOR_MODELS:-$HOME/.cache/candor/models}"
for gguf in "$models"/*.gguf; do
  [[ -f $gguf ]] || continue
  python3 scripts/gguf-skeleton.py make "$gguf" "$kit/models/$(basename "$gguf" .gguf).skel.xz" >&2
done
ls "$kit"/models/*.skel.xz >/dev/null 2>&1 ||
  echo "no GGUF models in $models: the proof will bench dummy weights only" >&2
# One dictionary over the fixtures too (their tokenizers, goldens and tiny weights repeat each
# other across directories): 17 MB where blocks of xz's default size take 33.
tar -C tests -cf - fixtures | xz -T1 --lzma2=preset=6,dict=192MiB >"$kit/fixtures.tar.xz"
# The device tool carries the working tree (tracked files, and untracked ones git does not
# ignore) with the kit: 64 MiB in all; tests/fixtures is moved out of the tree for the call
# (the kit holds it).
size=$(du -sb "$kit" | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard -- . ':!tests/fixtures' |
  xargs -0 -r stat -c %s -- 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
total=$((size + tree))
echo "kit: $kit ($((size / 1024 / 1024)) MiB) + working tree without tests/fixtures" \
  "($((tree / 1024 / 1024)) MiB) = $((total / 1024 / 1024)) MiB of the 64 MiB the device carries;" \
  "move tests/fixtures out of the tree for the device call (the kit carries it)" >&2
if ((total > 62 * 1024 * 1024)); then
  echo "kit and tree too large to carry together" >&2
  exit 1
fi
