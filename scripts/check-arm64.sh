#!/usr/bin/env bash
# Checks the transcriber on arm64 (Graviton) without an arm64 machine:
#   1. cross-builds the Lambda binary as infra/build.sh would (cargo lambda, zig,
#      whisper.cpp for Neoverse N1) and checks it as scripts/check-deploy.sh does
#      (AArch64, GLIBC no newer than Amazon Linux 2023's, size);
#   2. cross-builds the speech tests (functions/transcriber/tests/speech.rs: real
#      models, espeak-ng notes, Opus decoding) and runs them under qemu-user, for
#      correctness only: emulated times say nothing about Graviton's speed.
#
#   scripts/check-arm64.sh
#
# Needs scripts/bootstrap.sh (venv with cargo-lambda and zig, the models), the
# aarch64-unknown-linux-gnu Rust target, and from apt: qemu-user,
# libc6-arm64-cross, libstdc++6-arm64-cross (the sysroot qemu loads the binary
# with). About 11 minutes of builds from a warm x86_64 cache and 22 minutes of
# emulated tests on 2 cores.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REMEDIOS_VENV:-$ROOT/.venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/remedios/target}"
export PATH="$VENV/bin:$PATH"
# As infra/build.sh: no -march=native, Graviton2's CPU for ggml.
export GGML_NATIVE=OFF GGML_CPU_ARM_ARCH=neoverse_n1 GGML_LLAMAFILE=ON
SYSROOT=/usr/aarch64-linux-gnu
GLIBC_AL2023=2.34

log() { printf 'check-arm64.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ -x "$VENV/bin/cargo-lambda" ] || die "cargo-lambda missing in $VENV: run scripts/bootstrap.sh"
command -v qemu-aarch64 >/dev/null || die "qemu-aarch64 missing: apt-get install qemu-user"
[ -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ] ||
    die "no arm64 sysroot in $SYSROOT: apt-get install libc6-arm64-cross libstdc++6-arm64-cross"
rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu ||
    die "the Rust target is missing: rustup target add aarch64-unknown-linux-gnu"

cd "$ROOT"
log "building the transcriber for arm64 (release)"
cargo lambda build --release --arm64 -p transcriber
bootstrap="$CARGO_TARGET_DIR/lambda/transcriber/bootstrap"
machine="$(readelf -h "$bootstrap" | awk -F: '/Machine/ { gsub(/^ +/, "", $2); print $2 }')"
[ "$machine" = AArch64 ] || die "$bootstrap is $machine, not AArch64"
needed="$(readelf -V "$bootstrap" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
if [ -n "$needed" ] && [ "$(printf '%s\n%s\n' "$needed" "$GLIBC_AL2023" | sort -V | tail -1)" != "$GLIBC_AL2023" ]; then
    die "the binary needs GLIBC $needed, al2023 has $GLIBC_AL2023"
fi
log "binary: AArch64, GLIBC <= ${needed:-none}, $(($(stat -c %s "$bootstrap") / 1000000)) MB"

log "building the speech tests for arm64"
cargo lambda build --release --arm64 -p transcriber --test speech
# The newest build of the test (cargo names it speech-<hash>).
test_bin="$(ls -t "$CARGO_TARGET_DIR"/aarch64-unknown-linux-gnu/release/deps/speech-* |
    grep -v '\.d$' | head -1)"
[ -x "$test_bin" ] || die "the speech test binary was not built"

log "running the speech tests under qemu-aarch64 (slow: emulated)"
cd "$ROOT/functions/transcriber"
qemu-aarch64 -L "$SYSROOT" "$test_bin" --test-threads 1
log "arm64: built, checked and transcribed correctly under emulation"
