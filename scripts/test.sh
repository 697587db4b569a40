#!/usr/bin/env bash
# The test command: formatting, lints, then every test of the workspace against real
# components (moto, a llama.cpp model server, whisper models, the Graph API emulator),
# which the tests start themselves on loopback. Run scripts/bootstrap.sh first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/remedios/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export REMEDIOS_VENV="${REMEDIOS_VENV:-$ROOT/.venv}"

NEEDED_GIB=20

step() { printf '\n==> %s\n' "$*" >&2; }

step "pruning superseded builds in $CARGO_TARGET_DIR"
mkdir -p "$CARGO_TARGET_DIR"
python3 "$ROOT/scripts/prune-target.py" "$CARGO_TARGET_DIR"
free_gib=$(( $(df -Pk "$CARGO_TARGET_DIR" | awk 'NR==2 {print $4}') / 1024 / 1024 ))
if [ "$free_gib" -lt "$NEEDED_GIB" ]; then
    echo "test.sh: warning: only ${free_gib} GiB free for $CARGO_TARGET_DIR; a build from" \
        "scratch and the tests need about ${NEEDED_GIB} GiB: tests that write files will fail" \
        "with 'No space left on device' (free space or point CARGO_TARGET_DIR elsewhere)" >&2
fi

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo nextest run --workspace"
cargo nextest run --workspace --locked --no-fail-fast
