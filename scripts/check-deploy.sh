#!/usr/bin/env bash
# Proves the deploy artefacts: `sam build` from a clean clone of HEAD (as infra/build.sh
# runs it), then for each function's `bootstrap` the architecture the template declares,
# the GLIBC versions it needs (all must exist on provided.al2023, GLIBC 2.34) and its size;
# and for each whisper model in .cache/models whether Lambda takes it as a direct zip
# upload (50 MB zipped), as a layer (250 MB unzipped, with the function), or only from S3,
# and whether the transcriber's defaults hold it: the copy in /tmp within the template's
# EphemeralStorage, and the peak memory of loading it and transcribing 30 s (measured by
# the speech bench in a process of its own) within TranscriberMemorySize.
#
#   scripts/check-deploy.sh              # with CARGO_TARGET_DIR as exported (or unset)
#   scripts/check-deploy.sh --both       # once with CARGO_TARGET_DIR exported, once unset
#
# Too slow for CI on 2 cores (about 16 minutes per build from scratch): run it before a
# release and keep its figures. Needs what scripts/bootstrap.sh installs (sam,
# cargo-lambda, zig in the venv) and readelf (binutils).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REMEDIOS_VENV:-$ROOT/.venv}"
GLIBC_AL2023="2.34"
ZIP_LIMIT=$((50 * 1000 * 1000))
UNZIPPED_LIMIT=$((250 * 1000 * 1000))

for tool in readelf git; do
    command -v "$tool" >/dev/null || { echo "check-deploy: $tool is missing (apt-get install binutils git)" >&2; exit 1; }
done
[ -x "$VENV/bin/sam" ] || { echo "check-deploy: sam missing in $VENV: run scripts/bootstrap.sh" >&2; exit 1; }

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1000000 }'; }

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# The transcriber's two builds: bootstrap (whisper.cpp for AVX2, kept with
# TRANSCRIBER_BUILD=avx2) and transcriber-avx512 beside it (AVX-512 with VNNI), both with
# ggml's tiled matrix kernels (GGML_LLAMAFILE) and GLIBC <= 2.34. The AVX-512 one only runs
# here if this CPU has what it needs; otherwise bootstrap must keep the AVX2 build.
check_transcriber_builds() {
    local dir="$1" info avx512="$1/transcriber-avx512" needed
    info="$(TRANSCRIBER_BUILD=avx2 "$dir/bootstrap" --system-info 2>&1)" ||
        fail "TranscriberFunction: bootstrap --system-info failed: $info"
    case "$info" in
        *"build = avx2"*"AVX2 = 1"*"LLAMAFILE = 1"*)
            case "$info" in *"AVX512 = 1"*) fail "TranscriberFunction: the AVX2 build has AVX-512: $info" ;; esac
            echo "TranscriberFunction bootstrap: $info" | cut -c1-200 ;;
        *) fail "TranscriberFunction: bootstrap is not the AVX2 build with LLAMAFILE: $info" ;;
    esac
    [ -x "$avx512" ] || { fail "TranscriberFunction: no transcriber-avx512 beside bootstrap"; return; }
    readelf -h "$avx512" | grep -q 'X86-64' || fail "TranscriberFunction: transcriber-avx512 is not x86-64"
    needed="$(readelf -V "$avx512" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
    if [ -n "$needed" ] && [ "$(printf '%s\n%s\n' "$needed" "$GLIBC_AL2023" | sort -V | tail -1)" != "$GLIBC_AL2023" ]; then
        fail "TranscriberFunction: transcriber-avx512 needs GLIBC $needed, al2023 has $GLIBC_AL2023"
    fi
    if grep -qw avx512_vnni /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo; then
        info="$("$dir/bootstrap" --system-info 2>&1)" ||
            fail "TranscriberFunction: bootstrap --system-info (auto) failed: $info"
        case "$info" in
            *"build = avx512"*"AVX512 = 1"*"AVX512_VNNI = 1"*"LLAMAFILE = 1"*)
                echo "TranscriberFunction on this AVX-512 CPU: $info" | cut -c1-200 ;;
            *) fail "TranscriberFunction: bootstrap did not run the AVX-512 build on this AVX-512 CPU: $info" ;;
        esac
    else
        echo "TranscriberFunction: this CPU has no AVX-512 VNNI, so transcriber-avx512 was not run here"
    fi
}

# The voice engine's layer (VoiceEngineLayer, /opt/voice): for the responder's arm64, both
# libraries within al2023's GLIBC, espeak-ng-data and the voice there, and the layer with
# the responder's code within Lambda's 250 MB unzipped.
check_voice_layer() {
    local layer="$1/VoiceEngineLayer/voice" responder="$1/ResponderFunction" lib machine needed size
    if [ ! -d "$layer" ]; then
        fail "VoiceEngineLayer: no voice/ in $1/VoiceEngineLayer"
        return
    fi
    for lib in libonnxruntime.so libespeak-ng.so; do
        machine="$(readelf -h "$layer/$lib" | awk -F: '/Machine/ { gsub(/^ +/, "", $2); print $2 }')"
        [ "$machine" = AArch64 ] || fail "VoiceEngineLayer: $lib is $machine, the responder is arm64"
        needed="$(readelf -V "$layer/$lib" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
        if [ -n "$needed" ] && [ "$(printf '%s\n%s\n' "$needed" "$GLIBC_AL2023" | sort -V | tail -1)" != "$GLIBC_AL2023" ]; then
            fail "VoiceEngineLayer: $lib needs GLIBC $needed, al2023 has $GLIBC_AL2023"
        fi
    done
    [ -d "$layer/espeak-ng-data" ] || fail "VoiceEngineLayer: no espeak-ng-data"
    [ -f "$layer/en_US-joe-medium.onnx" ] && [ -f "$layer/en_US-joe-medium.onnx.json" ] ||
        fail "VoiceEngineLayer: no English voice"
    size="$(du -cb "$layer" "$responder"/* | tail -1 | cut -f1)"
    [ "$size" -le "$UNZIPPED_LIMIT" ] ||
        fail "ResponderFunction with VoiceEngineLayer: $(mb "$size") MB unzipped, over Lambda's 250 MB"
    printf '%-20s %-8s GLIBC <= %-5s %6s MB (with the responder: %s MB of 250)\n' VoiceEngineLayer arm64 \
        "${needed:-none}" "$(mb "$(du -cb "$layer" | tail -1 | cut -f1)")" "$(mb "$size")"
}

# One `sam build` in a fresh clone; $1 says whether CARGO_TARGET_DIR is exported.
build_and_check() {
    local mode="$1" clone
    clone="$(mktemp -d)"
    git clone --quiet "$ROOT" "$clone/remedios"
    local started=$SECONDS
    (
        cd "$clone/remedios"
        export REMEDIOS_VENV="$VENV"
        if [ "$mode" = "unset" ]; then
            unset CARGO_TARGET_DIR
        else
            export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$clone/target}"
        fi
        infra/build.sh > "$clone/sam-build.log" 2>&1
    ) || { fail "sam build ($mode CARGO_TARGET_DIR) failed: see $clone/sam-build.log"; return; }
    echo "sam build with CARGO_TARGET_DIR $mode: $((SECONDS - started)) s"

    local build="$clone/remedios/infra/.aws-sam/build"
    for function in WebhookFunction TranscriberFunction ResponderFunction; do
        local bootstrap="$build/$function/bootstrap"
        if [ ! -f "$bootstrap" ]; then
            fail "$function: no bootstrap in $build/$function"
            continue
        fi
        local declared machine needed size
        declared="$(awk -v fn="  $function:" '
            $0 == fn { inside = 1; next }
            inside && /^  [A-Za-z]/ { inside = 0 }
            inside && /Architectures:/ { gsub(/[][ ]/, "", $2); print $2; exit }' \
            "$clone/remedios/infra/template.yaml")"
        machine="$(readelf -h "$bootstrap" | awk -F: '/Machine/ { gsub(/^ +/, "", $2); print $2 }')"
        case "$declared:$machine" in
            arm64:AArch64 | x86_64:*X86-64*) ;;
            *) fail "$function: the template declares ${declared:-nothing}, the binary is $machine" ;;
        esac
        needed="$(readelf -V "$bootstrap" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
        if [ -n "$needed" ] && [ "$(printf '%s\n%s\n' "$needed" "$GLIBC_AL2023" | sort -V | tail -1)" != "$GLIBC_AL2023" ]; then
            fail "$function: needs GLIBC $needed, al2023 has $GLIBC_AL2023"
        fi
        if [ "$function" = TranscriberFunction ] && [ "$machine" != AArch64 ]; then
            check_transcriber_builds "$build/$function"
        fi
        size="$(du -cb "$build/$function"/* | tail -1 | cut -f1)"
        printf '%-20s %-8s GLIBC <= %-5s %6s MB\n' "$function" "$declared" "${needed:-none}" \
            "$(mb "$size")"
    done
    check_voice_layer "$build"
    rm -rf "$clone"
}

case "${1:-}" in
    --both)
        build_and_check exported
        build_and_check unset
        ;;
    "")
        if [ -n "${CARGO_TARGET_DIR:-}" ]; then build_and_check exported; else build_and_check unset; fi
        ;;
    *)
        echo "usage: scripts/check-deploy.sh [--both]" >&2
        exit 2
        ;;
esac

# The transcriber's defaults in the template: its /tmp and its memory, in MB.
TEMPLATE="$ROOT/infra/template.yaml"
EPHEMERAL_MB="$(awk '/EphemeralStorage:/ { getline; gsub(/[^0-9]/, ""); print; exit }' "$TEMPLATE")"
MEMORY_MB="$(awk '$0 == "  TranscriberMemorySize:" { inside = 1; next }
    inside && /Default:/ { gsub(/[^0-9]/, ""); print; exit }' "$TEMPLATE")"
# What the function needs beside whisper: its runtime and clients, and a 10-minute note
# decoded (16 kHz, 4 bytes a sample: 38 MB) with its Ogg bytes.
FUNCTION_MB=96
echo "building the speech bench (release) to measure each model's peak memory"
(cd "$ROOT" && cargo bench -p transcriber --bench speech --no-run --quiet 2>/dev/null) ||
    fail "the speech bench does not build"

# The model artefacts against Lambda's limits (the transcriber's own code counts toward
# the layer limit: about 54 MB, its two builds of whisper.cpp).
shopt -s nullglob
for model in "$ROOT"/.cache/models/ggml-*.bin; do
    name="$(basename "$model")"
    peak="$(cd "$ROOT" && SPEECH_BENCH_MODEL="$name" cargo bench -p transcriber --bench speech --quiet -- --bench 2>/dev/null |
        awk '/peak RSS/ { print $(NF - 1) }')"
    if [ -z "$peak" ]; then
        fail "$name: the speech bench did not measure its memory"
        peak=0
    fi
    needed=$((peak * 1048576 / 1000000 + FUNCTION_MB))
    tmp_needed=$(( $(stat -c %s "$model") / 1000000 + 1 ))
    fits="fits"
    if [ "$tmp_needed" -gt "$EPHEMERAL_MB" ]; then
        fail "$name: $tmp_needed MB in /tmp, over the template's EphemeralStorage ($EPHEMERAL_MB MB)"
        fits="too big"
    fi
    if [ "$needed" -gt "$MEMORY_MB" ]; then
        fail "$name: needs about $needed MB of memory, over TranscriberMemorySize's default ($MEMORY_MB MB)"
        fits="too big"
    fi
    printf '%-28s /tmp %5s of %5s MB, memory %5s of %5s MB (peak RSS %s MiB + %s MB): %s\n' \
        "$name" "$tmp_needed" "$EPHEMERAL_MB" "$needed" "$MEMORY_MB" "$peak" "$FUNCTION_MB" "$fits"
done
for model in "$ROOT"/.cache/models/ggml-*.bin; do
    size="$(stat -c %s "$model")"
    zipped="$("$VENV/bin/python" - "$model" <<'EOF'
import io, sys, zipfile
buffer = io.BytesIO()
with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
    z.write(sys.argv[1], "models/" + sys.argv[1].rsplit("/", 1)[-1])
print(buffer.tell())
EOF
)"
    if [ "$zipped" -le "$ZIP_LIMIT" ]; then
        route="direct zip upload, layer or S3"
    elif [ $((size + 54 * 1000 * 1000)) -le "$UNZIPPED_LIMIT" ]; then
        route="layer published from S3, or S3 (WhisperModelS3Key)"
    else
        route="S3 only (WhisperModelS3Key): over the 250 MB layer limit"
    fi
    printf '%-28s %7s MB, zipped %7s MB: %s\n' "$(basename "$model")" \
        "$(mb "$size")" "$(mb "$zipped")" "$route"
done

if [ "$failures" -gt 0 ]; then
    echo "check-deploy: $failures problem(s)" >&2
    exit 1
fi
echo "check-deploy: the artefacts fit Lambda"
