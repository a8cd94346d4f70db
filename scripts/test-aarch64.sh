#!/usr/bin/env bash
# test-aarch64.sh — cross-build the candor-kernels tests for aarch64 and run them under QEMU user
# emulation twice: on an emulated CPU with the dotprod extension (`-cpu max`: the NEON + sdot
# kernels) and on one without it (`-cpu cortex-a57`: the Armv8.0 NEON kernels). Each run also
# checks that `Isa::best()` picks the kernel set that CPU should get (CANDOR_EXPECT_ISA).
#
# Usage:  scripts/test-aarch64.sh [extra `cargo test` arguments, e.g. `--lib quant`]
#
# Needs the Rust target aarch64-unknown-linux-gnu, the cross linker aarch64-linux-gnu-gcc with
# the arm64 libc (for the test binaries' dynamic loader and libc), and qemu-aarch64. Missing
# pieces are installed where possible (rustup; apt-get as root or through passwordless sudo);
# otherwise the script stops and says what is missing.
#
# Builds into target-aarch64/ at the repository root (ignored by git), apart from the native
# target/ so neither build invalidates the other.
set -euo pipefail

log() { printf '[test-aarch64] %s\n' "$*" >&2; }
die() { printf '[test-aarch64] ERROR: %s\n' "$*" >&2; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu

# --- toolchain -------------------------------------------------------------------------------
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  log "adding the Rust target $TARGET"
  rustup target add "$TARGET" || die "could not add the Rust target $TARGET (rustup target add $TARGET)"
fi

apt_install() {
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      return 1
    fi
  fi
  command -v apt-get >/dev/null || return 1
  "${sudo[@]}" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "$@"
}

if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null ||
  [ ! -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ]; then
  log "installing the cross linker, the arm64 libc and QEMU user emulation"
  apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user ||
    die "missing aarch64-linux-gnu-gcc, $SYSROOT (libc6-dev-arm64-cross) or qemu-aarch64, and apt-get could not install them (needs root or passwordless sudo): apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
fi
command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc not found after installing"
command -v qemu-aarch64 >/dev/null || die "qemu-aarch64 not found after installing"
[ -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ] || die "no arm64 dynamic loader under $SYSROOT/lib"

# --- build once, run on both CPUs -------------------------------------------------------------
export CARGO_TARGET_DIR="$ROOT/target-aarch64"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
cd "$ROOT"

run_on() {
  local cpu="$1" want="$2"
  shift 2
  log "QEMU -cpu $cpu: expecting Isa::best() = $want"
  CANDOR_EXPECT_ISA="$want" \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $SYSROOT -cpu $cpu" \
    cargo test --release -p candor-kernels --target "$TARGET" "$@"
}

run_on max NeonDotprod "$@"
run_on cortex-a57 Neon "$@"
log "aarch64 kernel tests passed on both emulated CPUs"
