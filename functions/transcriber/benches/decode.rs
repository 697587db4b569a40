//! Decode speed of a WhatsApp-like voice note: about 45 s of espeak-ng speech, encoded with
//! opusenc at 24 kbit/s, decoded to 16 kHz mono f32. The target is at least 300x real time.
//!
//! Run with `cargo bench -p transcriber --bench decode`; the real-time factor is printed
//! before criterion's own report.

use remedios_testkit::audio;

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use transcriber::audio::{DecodeLimits, decode};

fn bench_decode(c: &mut Criterion) {
    let fx = audio::Fixtures::new();
    let wav = fx.speech_wav("long.wav", &audio::long_text(45));
    let note_path = fx.opus(&wav, "long.ogg", 24, &[]);
    let note = audio::read(&note_path);
    let limits = DecodeLimits::default();

    let audio = match decode(&note, Some("audio/ogg; codecs=opus"), &limits) {
        Ok(audio) => audio,
        Err(e) => panic!("the benchmark note does not decode: {e}"),
    };
    let seconds = audio.duration.as_secs_f64();
    assert!(
        (30.0..=60.0).contains(&seconds),
        "the benchmark note should last 30-60 s, not {seconds:.1} s"
    );

    // A quick real-time-factor figure, independent of criterion's statistics.
    let runs = 20;
    let started = Instant::now();
    for _ in 0..runs {
        let decoded = decode(black_box(&note), None, &limits);
        black_box(decoded.ok());
    }
    let per_decode = started.elapsed().as_secs_f64() / f64::from(runs);
    println!(
        "voice note: {seconds:.1} s of audio, {} bytes; decode {:.2} ms = {:.0}x real time",
        note.len(),
        per_decode * 1e3,
        seconds / per_decode
    );

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(note.len() as u64));
    group.bench_function("ogg_opus_voice_note_45s_to_16k", |b| {
        b.iter(|| decode(black_box(&note), Some("audio/ogg; codecs=opus"), &limits))
    });
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
