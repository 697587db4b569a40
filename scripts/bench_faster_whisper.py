#!/usr/bin/env python3
"""faster-whisper's side of scripts/bench-speech.sh.

    bench_faster_whisper.py NOTES_DIR MODEL_DIR OUT.json

Transcribes every NOTES_DIR/<clip>.ogg with the CTranslate2 model in MODEL_DIR (int8,
2 threads, beam 1, no VAD; English, or with BENCH_SPEECH_LANGUAGE=auto faster-whisper's own
language detection on the first 30 s, as our default detects it): once to warm up, then RUNS times (3, or
BENCH_SPEECH_RUNS), timing the whole call (Ogg/Opus decoding included, as on our side).
int8 is CTranslate2's quantisation of the model's f16 weights, made when it loads them: the
like-for-like row on our side is the q8_0 model (whisper-convert --quantize q8_0). Writes the median time, the audio
duration, the last transcript and the language of each clip to OUT.json; the word error rate is computed
by the Rust bench (functions/transcriber/benches/compare.rs) so both engines share one
definition.
"""

import json
import os
import statistics
import sys
import time
from pathlib import Path

THREADS = int(os.environ.get("BENCH_SPEECH_THREADS", "2"))
RUNS = max(1, int(os.environ.get("BENCH_SPEECH_RUNS", "3")))
LANGUAGE = os.environ.get("BENCH_SPEECH_LANGUAGE", "en")


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    notes, model_dir, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    try:
        import faster_whisper
        from faster_whisper import WhisperModel
        from faster_whisper.audio import decode_audio
    except ImportError as e:
        sys.exit(f"faster-whisper is not installed in this venv ({e}): run scripts/bench-speech.sh")
    if not (model_dir / "model.bin").is_file():
        sys.exit(f"no CTranslate2 model at {model_dir}: run scripts/models.sh")

    started = time.perf_counter()
    model = WhisperModel(
        str(model_dir), device="cpu", compute_type="int8", cpu_threads=THREADS, num_workers=1
    )
    load_s = time.perf_counter() - started

    clips = []
    for ogg in sorted(notes.glob("*.ogg")):
        audio_s = len(decode_audio(str(ogg))) / 16000
        times, cpu_times, text, language = [], [], "", None
        for run in range(RUNS + 1):
            cpu = time.process_time()
            started = time.perf_counter()
            segments, info = model.transcribe(
                str(ogg),
                language=None if LANGUAGE == "auto" else LANGUAGE,
                beam_size=1,
                best_of=1,
                vad_filter=False,
            )
            text = " ".join(s.text.strip() for s in segments).strip()
            language = info.language
            if run > 0:
                times.append(time.perf_counter() - started)
                cpu_times.append(time.process_time() - cpu)
        clips.append(
            {
                "name": ogg.stem,
                "audio_s": audio_s,
                "median_s": statistics.median(times),
                "times_s": times,
                "cpu_s": statistics.median(cpu_times),
                "text": text,
                "language": language,
            }
        )
        print(f"faster-whisper: {ogg.stem}: median {statistics.median(times):.3f} s", file=sys.stderr)

    result = {
        "engine": f"faster-whisper {faster_whisper.__version__} int8",
        "load_s": load_s,
        "clips": clips,
    }
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
