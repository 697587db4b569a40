#!/usr/bin/env bash
# How long a new user waits: from `cargo run -p remedios-local -- up` in a fresh clone
# to the first answer in `remedios chat`, cold and then warm.
#
#   scripts/first-answer.sh
#
# Clones HEAD into a temporary directory with its own CARGO_TARGET_DIR and no
# REMEDIOS_VENV, so the cold run does what a new user's first `up` does: bootstrap
# --run (the venv with moto and cargo-lambda, llama.cpp with SmolLM2, the whisper
# models from PyPI), builds the CLI and the functions, starts the stack; then one
# question in chat. The warm run is the same clone again: everything installed and
# built. System packages (cmake, clang...) are taken as installed: on a machine
# without them the cold run adds apt-get's time. Prints one row per run; needs the
# package registries (pip) and about 6 GB of disk. Ports: FIRST_ANSWER_PORT (8790)
# and the four after it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${FIRST_ANSWER_PORT:-8790}"
QUESTION="What can you help me with?"

log() { printf 'first-answer.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/first-answer.XXXXXX")"
UP_PID=""
cleanup() {
    if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
        kill -INT "$UP_PID" 2>/dev/null || true
        wait "$UP_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

git clone --quiet "$ROOT" "$WORK/clone"
export CARGO_TARGET_DIR="$WORK/target"
unset REMEDIOS_VENV GPT4ALL_URL WHATSAPP_ACCESS_TOKEN
export CARGO_TERM_COLOR=never

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$2" 'BEGIN { s = b - a; printf "%dm %04.1fs", s / 60, s - 60 * int(s / 60) }'; }

run() {
    local label="$1" up_log="$WORK/$1-up.log" chat_log="$WORK/$1-chat.log"
    log "$label: remedios up (log: $up_log)"
    local started ready answered
    started=$(now)
    (cd "$WORK/clone" && exec cargo run --quiet -p remedios-local -- up --port "$PORT") \
        > "$up_log" 2>&1 &
    UP_PID=$!
    until grep -q "Remedios is up" "$up_log"; do
        if ! kill -0 "$UP_PID" 2>/dev/null; then
            tail -40 "$up_log" >&2
            die "$label: remedios up stopped before the stack was ready"
        fi
        sleep 0.5
    done
    ready=$(now)
    log "$label: ready after $(since "$started" "$ready"); asking: $QUESTION"
    printf '%s\n' "$QUESTION" |
        (cd "$WORK/clone" && cargo run --quiet -p remedios-local -- chat --timeout 300) \
            > "$chat_log" 2>&1 || true
    answered=$(now)
    grep -q "remedios> " "$chat_log" || { cat "$chat_log" >&2; die "$label: no answer in chat"; }
    kill -INT "$UP_PID"
    wait "$UP_PID" || true
    UP_PID=""
    printf '| %s | %s | %s | %s |\n' "$label" "$(since "$started" "$ready")" \
        "$(since "$ready" "$answered")" "$(since "$started" "$answered")"
}

echo "| run | up to ready | ready to first answer | up to first answer |"
echo "|---|---|---|---|"
run cold
run warm
