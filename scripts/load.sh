#!/usr/bin/env bash
# The reliability suite at its heavier size, outside CI's time: 2,000 signed
# notifications from 200 users through the whole local pipeline, without and with
# faults, with its figures printed (requests per second, webhook latency, drain time).
# `scripts/test.sh` runs the same tests with 1,000 notifications from 100 users.
#
#   scripts/load.sh            # 200 users
#   scripts/load.sh 400        # another number of users (at least 100)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/remedios/target}"
export REMEDIOS_VENV="${REMEDIOS_VENV:-$ROOT/.venv}"
export REMEDIOS_LOAD_USERS="${1:-200}"
exec cargo nextest run --workspace --locked -E 'binary(load)' --no-capture
