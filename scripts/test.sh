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

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo nextest run --workspace"
cargo nextest run --workspace --locked --no-fail-fast
