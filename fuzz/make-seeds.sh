#!/usr/bin/env bash
# Regenerates the committed fuzz seeds (fuzz/seeds/), which scripts/fuzz.sh starts from and
# tests/tests/fuzz_regressions.rs replays:
#   webhook_body/  notification bodies from remedios_emulators::meta (tests/examples/fuzz_seeds.rs)
#   audio_decode/  a short espeak-ng word in every format the transcriber decodes, encoded
#                  with opusenc/ffmpeg/sox (what scripts/bootstrap.sh installs), each < 50 KB.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/remedios/target}"
SEEDS="$ROOT/fuzz/seeds"

for tool in espeak-ng sox opusenc ffmpeg; do
    command -v "$tool" >/dev/null || { echo "make-seeds: $tool is missing: run scripts/bootstrap.sh" >&2; exit 1; }
done

rm -rf "$SEEDS/webhook_body" "$SEEDS/audio_decode"
mkdir -p "$SEEDS/webhook_body" "$SEEDS/audio_decode"
cargo run --quiet -p remedios-e2e --example fuzz_seeds -- "$SEEDS/webhook_body"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
out="$SEEDS/audio_decode"
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }

# About half a second of speech at 22.05 kHz mono, then smaller variants of it.
espeak-ng -v en -s 220 -w "$work/word.wav" "hello"
sox "$work/word.wav" -r 8000 "$work/w8k.wav" trim 0 0.5
sox "$work/word.wav" -r 48000 -c 2 "$work/w48k-stereo.wav" trim 0 0.3

opusenc --quiet --bitrate 6 "$work/w8k.wav" "$out/voice-note.opus"
opusenc --quiet --bitrate 12 "$work/w48k-stereo.wav" "$out/stereo.opus"
ff -i "$work/w8k.wav" -c:a libmp3lame -b:a 8k "$out/speech.mp3"
ff -i "$work/w8k.wav" -c:a libmp3lame -b:a 8k -metadata title=Remedios -id3v2_version 3 "$out/id3.mp3"
ff -i "$work/w8k.wav" -c:a aac -b:a 12k "$out/speech.m4a"
ff -i "$work/w8k.wav" -c:a aac -b:a 12k -f adts "$out/speech.aac"
ff -i "$work/w8k.wav" -c:a flac "$out/speech.flac"
ff -i "$work/w8k.wav" -c:a flac -f ogg "$out/speech.oga"
ff -i "$work/word.wav" -ar 16000 -c:a libvorbis -q:a 0 "$out/speech.ogg"
ff -i "$work/w8k.wav" -t 0.25 -c:a pcm_s16le "$out/s16.wav"
ff -i "$work/w8k.wav" -t 0.25 -c:a pcm_u8 -ac 2 "$out/u8-stereo.wav"
ff -i "$work/w8k.wav" -t 0.15 -c:a pcm_f32le "$out/f32.wav"
ff -i "$work/w8k.wav" -t 0.25 -c:a pcm_alaw "$out/alaw.wav"
ff -i "$work/w8k.wav" -t 0.25 -c:a pcm_mulaw "$out/mulaw.wav"

ls -l "$SEEDS"/*/ >&2
too_big="$(find "$SEEDS" -type f -size +50k)"
if [ -n "$too_big" ]; then
    echo "make-seeds: seeds over 50 KB: $too_big" >&2
    exit 1
fi
