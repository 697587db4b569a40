//! Hostile audio against the transcriber's decoder (issue 7, "decompression and decode are
//! bounded in time and memory"): small files that expand to twenty minutes of silence in
//! every compressed format, and headers that lie about sizes (Ogg granule positions and
//! lacing, Opus headers, WAV chunk sizes, MP4 sample tables).
//!
//! Memory is measured, not guessed: this test binary counts the heap its own thread
//! allocates (a counting global allocator with per-thread tallies, so tests running in
//! parallel do not disturb each other), and each decode is held to a peak that follows
//! from [`DecodeLimits`]: the output grows by 64 KB per second of audio (16 kHz `f32`), and
//! a growing `Vec` briefly needs up to three times that (see [`heap_bound`]). libopus allocates its small
//! fixed-size decoder state with C `malloc`, which is not counted.
//!
//! Time is bounded loosely (whole seconds, on a shared CI machine): the point is that
//! decoding stops at the limit instead of running on for the length the file claims. Speed
//! itself is measured by `cargo bench -p transcriber --bench decode`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use remedios_fuzz_checks::check_decoded;
use transcriber::audio::{AudioError, DecodeLimits, DecodedAudio, decode};

use remedios_testkit::audio::{self, Fixtures};

// ---------------------------------------------------------------------------------------
// Heap accounting for the current thread.

struct CountingAllocator;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn grew(by: usize, block: usize) {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(by);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(block)));
}

fn shrank(by: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(by)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters change.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size(), layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size(), layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // While a block moves, the old and the new one both exist.
            grew(new_size, new_size);
            shrank(layout.size());
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// What one decode cost on this thread.
#[derive(Debug)]
struct Cost {
    /// Most heap bytes live at once beyond what was live before the decode.
    peak_bytes: usize,
    /// The largest single allocation.
    largest_bytes: usize,
    elapsed: Duration,
}

/// `decode` catches a panic inside a third-party decoder and reports the file as corrupt.
/// The default panic hook would still print (and, with `RUST_BACKTRACE` set, symbolise) a
/// backtrace for it, which costs seconds and hundreds of MB and would be charged to the
/// decode: such panics print one line instead. Other panics keep the default hook.
fn quiet_dependency_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info
                .location()
                .is_some_and(|l| l.file().contains("/registry/src/"))
            {
                eprintln!("caught panic in a dependency: {info}");
            } else {
                default_hook(info);
            }
        }));
    });
}

fn measured(
    bytes: &[u8],
    mime: Option<&str>,
    limits: &DecodeLimits,
) -> (Result<DecodedAudio, AudioError>, Cost) {
    quiet_dependency_panics();
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    LARGEST.with(|l| l.set(0));
    let started = Instant::now();
    let result = decode(bytes, mime, limits);
    let elapsed = started.elapsed();
    let cost = Cost {
        peak_bytes: PEAK.with(Cell::get).saturating_sub(base),
        largest_bytes: LARGEST.with(Cell::get),
        elapsed,
    };
    if let Ok(audio) = &result {
        check_decoded(audio, limits);
    }
    (result, cost)
}

const MB: usize = 1024 * 1024;
/// Output bytes per second of audio: 16 kHz mono `f32`.
const OUTPUT_BYTES_PER_SECOND: usize = 16_000 * 4;

/// The heap a decode under `limits` may use: the output three times over (a `Vec` that
/// grows by doubling holds up to twice what it needs, and while it moves, the old block
/// exists too) plus a fixed allowance for the demuxer, the decoder and the resampler.
fn heap_bound(limits: &DecodeLimits) -> usize {
    let seconds = usize::try_from(limits.max_duration.as_secs()).unwrap_or(usize::MAX);
    3 * seconds * OUTPUT_BYTES_PER_SECOND + 16 * MB
}

fn small_limits() -> DecodeLimits {
    DecodeLimits {
        max_duration: Duration::from_secs(60),
        ..DecodeLimits::default()
    }
}

// ---------------------------------------------------------------------------------------
// Decompression bombs: a small file, a long silence.

#[test]
fn twenty_minutes_of_silence_stop_at_the_limit_in_bounded_time_and_memory() {
    let fx = Fixtures::new();
    let wav = fx.path("silence.wav");
    let wav_str = wav.to_str().expect("a UTF-8 temporary path");
    // -D: no dither, so the silence is digital silence and compresses as a bomb would.
    fx.sox(&[
        "-D", "-n", "-r", "8000", "-c", "1", "-b", "16", wav_str, "trim", "0", "1200",
    ]);
    let bombs = [
        (
            "Ogg/Opus",
            "audio/ogg; codecs=opus",
            fx.opus(
                &wav,
                "silence.opus",
                6,
                &["--comp", "0", "--framesize", "60"],
            ),
        ),
        (
            "FLAC",
            "audio/flac",
            fx.ffmpeg(&wav, "silence.flac", &["-c:a", "flac"]),
        ),
        (
            "MP3",
            "audio/mpeg",
            fx.ffmpeg(&wav, "silence.mp3", &["-c:a", "libmp3lame", "-b:a", "8k"]),
        ),
        (
            "M4A",
            "audio/mp4",
            fx.ffmpeg(&wav, "silence.m4a", &["-c:a", "aac", "-b:a", "8k"]),
        ),
    ];
    let pcm_bytes = 1200 * 8000 * 2;
    for (format, mime, path) in &bombs {
        let bytes = audio::read(path);
        assert!(
            bytes.len() * 10 < pcm_bytes,
            "{format}: {} bytes is no bomb",
            bytes.len()
        );
        let mut all_limits = vec![
            small_limits(),
            DecodeLimits {
                max_duration: Duration::from_secs(300),
                ..DecodeLimits::default()
            },
        ];
        // The production limit (15 minutes) for the WhatsApp voice-note format; the others
        // would only repeat it more slowly.
        if *format == "Ogg/Opus" {
            all_limits.push(DecodeLimits::default());
        }
        for limits in all_limits {
            let (result, cost) = measured(&bytes, Some(mime), &limits);
            eprintln!(
                "{format}: {} KB claiming 20 min, limit {} s: {:?} in {:?}, peak heap {:.1} MB, largest block {:.1} MB",
                bytes.len() / 1024,
                limits.max_duration.as_secs(),
                result.as_ref().map(|a| a.duration),
                cost.elapsed,
                cost.peak_bytes as f64 / MB as f64,
                cost.largest_bytes as f64 / MB as f64,
            );
            assert_eq!(
                result.map(|a| a.duration),
                Err(AudioError::TooLong {
                    limit: limits.max_duration
                }),
                "{format} under a {} s limit",
                limits.max_duration.as_secs()
            );
            assert!(
                cost.peak_bytes <= heap_bound(&limits),
                "{format}: peak heap {} bytes over the bound {} for {} s",
                cost.peak_bytes,
                heap_bound(&limits),
                limits.max_duration.as_secs()
            );
            // Decoding runs at least tens of times faster than real time, even in a test
            // build on a busy machine: stopping at a minute of audio takes seconds, while
            // decoding the twenty minutes the file holds would take many times longer.
            if limits == small_limits() {
                assert!(
                    cost.elapsed < Duration::from_secs(30),
                    "{format}: {:?} to reach the limit",
                    cost.elapsed
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Headers that lie.

/// Asserts that decoding `bytes` under [`small_limits`] fails or succeeds within bounds,
/// with a small heap and quickly. Returns the result for further checks.
fn bounded(what: &str, bytes: &[u8], mime: Option<&str>) -> Result<DecodedAudio, AudioError> {
    let limits = small_limits();
    let (result, cost) = measured(bytes, mime, &limits);
    eprintln!(
        "{what}: {:?} in {:?}, peak heap {:.2} MB, largest block {:.2} MB",
        result.as_ref().map(|a| a.duration),
        cost.elapsed,
        cost.peak_bytes as f64 / MB as f64,
        cost.largest_bytes as f64 / MB as f64
    );
    // Nothing here is longer than a few seconds of real audio: a few MB at most.
    let bound = 8 * MB + 4 * bytes.len();
    assert!(
        cost.peak_bytes <= bound,
        "{what}: peak heap {} bytes over {bound}",
        cost.peak_bytes
    );
    assert!(
        cost.elapsed < Duration::from_secs(10),
        "{what}: took {:?}",
        cost.elapsed
    );
    result
}

/// The Ogg page checksum (CRC-32, polynomial 0x04c11db7, not reflected, initial 0).
fn ogg_crc(page: &[u8]) -> u32 {
    page.iter().fold(0u32, |mut crc, &byte| {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
        crc
    })
}

/// The byte ranges of the Ogg pages of a well-formed file.
fn ogg_pages(data: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut pages = Vec::new();
    let mut at = 0;
    while at + 27 <= data.len() && &data[at..at + 4] == b"OggS" {
        let segments = usize::from(data[at + 26]);
        let body: usize = data[at + 27..at + 27 + segments]
            .iter()
            .map(|&b| usize::from(b))
            .sum();
        let end = at + 27 + segments + body;
        pages.push(at..end);
        at = end;
    }
    assert!(pages.len() > 2, "not an Ogg file");
    pages
}

/// Applies `patch` to every page (index, page bytes) and recomputes the checksums, so the
/// lies get past the CRC check and reach the parser.
fn patch_ogg(data: &[u8], mut patch: impl FnMut(usize, &mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for (index, range) in ogg_pages(data).into_iter().enumerate() {
        let mut page = data[range].to_vec();
        patch(index, &mut page);
        page[22..26].fill(0);
        let crc = ogg_crc(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&page);
    }
    out
}

#[test]
fn ogg_opus_headers_claiming_huge_sizes_are_bounded() {
    let fx = Fixtures::new();
    let tone = fx.tone_wav("tone.wav", 440.0, 3.0, 48_000, 1);
    let note = audio::read(&fx.opus(&tone, "tone.opus", 16, &[]));
    let mime = Some("audio/ogg; codecs=opus");
    assert_eq!(
        patch_ogg(&note, |_, _| {}),
        note,
        "the CRC is recomputed exactly"
    );
    let real = bounded("the real note", &note, mime).expect("the real note decodes");
    assert!(real.duration > Duration::from_millis(2900));

    // Every page claims to end about 3 million years in (granule positions near 2^62).
    let far = patch_ogg(&note, |i, page| {
        if i >= 2 {
            page[6..14].copy_from_slice(&(u64::MAX / 4 + i as u64).to_le_bytes());
        }
    });
    // Without a usable end position nothing is trimmed from the last packet (at most
    // 120 ms of it); the huge numbers themselves size nothing.
    let audio = bounded("granule positions near 2^62", &far, mime).map(|a| a.duration);
    assert!(
        audio
            .as_ref()
            .map_or(true, |d| *d <= real.duration + Duration::from_millis(120)),
        "{audio:?}"
    );

    // The last page claims to end before the first sample (a granule position of 0).
    let pages = ogg_pages(&note).len();
    let short = patch_ogg(&note, |i, page| {
        if i == pages - 1 {
            page[6..14].fill(0);
        }
    });
    let _ = bounded("final granule position 0", &short, mime);

    // OpusHead: the largest pre-skip and the loudest/quietest output gain.
    for (what, pre_skip, gain) in [
        ("pre-skip 65535", u16::MAX, 0i16),
        ("gain +128 dB", 0, i16::MAX),
        ("gain -128 dB", 0, i16::MIN),
    ] {
        let head = patch_ogg(&note, |i, page| {
            if i == 0 {
                let at = 27 + usize::from(page[26]);
                page[at + 10..at + 12].copy_from_slice(&pre_skip.to_le_bytes());
                page[at + 16..at + 18].copy_from_slice(&gain.to_le_bytes());
            }
        });
        let _ = bounded(what, &head, mime);
    }

    // OpusHead claiming 255 channels: refused before any decoder is sized from it.
    let channels = patch_ogg(&note, |i, page| {
        if i == 0 {
            let at = 27 + usize::from(page[26]);
            page[at + 9] = 255;
        }
    });
    let err = bounded("255 channels", &channels, mime)
        .map(|a| a.duration)
        .expect_err("255 channels");
    assert!(
        matches!(err, AudioError::Unsupported { .. } | AudioError::Corrupt(_)),
        "{err:?}"
    );

    // A page whose lacing table promises 255 segments of 255 bytes, then the file ends.
    let mut truncated = note[..ogg_pages(&note)[2].start].to_vec();
    truncated.extend_from_slice(b"OggS\0\0");
    truncated.extend_from_slice(&[0xff; 8]);
    truncated.extend_from_slice(&note[14..26]);
    truncated.push(255);
    truncated.extend_from_slice(&[255; 255]);
    truncated.extend_from_slice(&[0; 100]);
    let _ = bounded("a page promising 64 KB that is not there", &truncated, mime);
}

/// A 16-bit mono PCM WAV header at `rate` with `chunks` between `fmt ` and `data`, and
/// `samples` of silence.
fn wav(fmt: &[u8], extra_chunks: &[u8], data_len: u32, samples: usize) -> Vec<u8> {
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&u32::MAX.to_le_bytes());
    w.extend_from_slice(b"WAVE");
    w.extend_from_slice(fmt);
    w.extend_from_slice(extra_chunks);
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    w.extend(std::iter::repeat_n(0u8, samples * 2));
    w
}

fn fmt_chunk(size: u32, format: u16, channels: u16, rate: u32, block: u16, bits: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(b"fmt ");
    f.extend_from_slice(&size.to_le_bytes());
    f.extend_from_slice(&format.to_le_bytes());
    f.extend_from_slice(&channels.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&(rate.wrapping_mul(u32::from(block))).to_le_bytes());
    f.extend_from_slice(&block.to_le_bytes());
    f.extend_from_slice(&bits.to_le_bytes());
    f
}

#[test]
fn wav_headers_with_absurd_sizes_are_bounded() {
    let good_fmt = fmt_chunk(16, 1, 1, 16_000, 2, 16);
    let good = wav(&good_fmt, &[], 32_000, 16_000);
    let audio = bounded("a good second of WAV", &good, Some("audio/wav")).expect("decodes");
    assert_eq!(audio.samples.len(), 16_000);

    let mut list_4gb = b"LIST".to_vec();
    list_4gb.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    list_4gb.extend_from_slice(b"INFOISFT");
    list_4gb.extend_from_slice(&0xFFFF_FF00u32.to_le_bytes());
    list_4gb.extend_from_slice(b"x\0");
    let mut junk_4gb = b"junk".to_vec();
    junk_4gb.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "fmt chunk claiming 4 GB",
            wav(
                &fmt_chunk(0xFFFF_FFF0, 1, 1, 16_000, 2, 16),
                &[],
                32_000,
                16_000,
            ),
        ),
        (
            "LIST/INFO chunk claiming 4 GB",
            wav(&good_fmt, &list_4gb, 32_000, 16_000),
        ),
        (
            "unknown chunk claiming 4 GB",
            wav(&good_fmt, &junk_4gb, 32_000, 16_000),
        ),
        (
            "65535 channels",
            wav(
                &fmt_chunk(16, 1, u16::MAX, 16_000, 2, 16),
                &[],
                32_000,
                16_000,
            ),
        ),
        (
            "a rate of 4 GHz",
            wav(&fmt_chunk(16, 1, 1, u32::MAX, 2, 16), &[], 32_000, 16_000),
        ),
        (
            "a rate of 1 Hz",
            wav(&fmt_chunk(16, 1, 1, 1, 2, 16), &[], 32_000, 16_000),
        ),
        (
            "zero bits and a zero block",
            wav(&fmt_chunk(16, 1, 1, 16_000, 0, 0), &[], 32_000, 16_000),
        ),
        (
            "65535-byte blocks",
            wav(
                &fmt_chunk(16, 1, 1, 16_000, u16::MAX, 16),
                &[],
                32_000,
                16_000,
            ),
        ),
        ("an extensible fmt with a 64 KB extension claim", {
            let mut f = fmt_chunk(40, 0xFFFE, 1, 16_000, 2, 16);
            f.extend_from_slice(&u16::MAX.to_le_bytes());
            f.extend_from_slice(&[0; 22]);
            wav(&f, &[], 32_000, 16_000)
        }),
        (
            "a data chunk claiming 4 GB over a second of samples",
            wav(&good_fmt, &[], u32::MAX, 16_000),
        ),
        (
            "an hour claimed at 384 kHz",
            wav(
                &fmt_chunk(16, 1, 1, 384_000, 2, 16),
                &[],
                384_000 * 2 * 3600 / 2,
                16_000,
            ),
        ),
    ];
    for (what, bytes) in cases {
        let _ = bounded(what, &bytes, Some("audio/wav"));
    }

    // Float samples that are NaN, infinite or absurdly loud, with and without resampling:
    // the output stays finite and within full scale (`check_decoded`).
    for rate in [16_000u32, 44_100] {
        let samples: Vec<f32> = (0..rate / 4)
            .map(|i| match i % 7 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => f32::NEG_INFINITY,
                3 => 3.0e38,
                _ => 0.1,
            })
            .collect();
        let mut float_wav = wav(&fmt_chunk(16, 3, 1, rate, 4, 32), &[], rate, 0);
        float_wav.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
        let audio = bounded(
            &format!("NaN and infinities at {rate} Hz"),
            &float_wav,
            None,
        )
        .map(|a| a.duration)
        .expect("float WAV decodes");
        assert_eq!(audio, Duration::from_millis(250));
    }
}

/// Finds the four-character MP4 box `name` in `data` and returns where its payload starts.
fn find_box(data: &[u8], name: &[u8; 4]) -> usize {
    data.windows(4)
        .position(|w| w == name)
        .map(|at| at + 4)
        .unwrap_or_else(|| panic!("no {} box", String::from_utf8_lossy(name)))
}

#[test]
fn mp4_sample_tables_claiming_billions_of_entries_are_bounded() {
    let fx = Fixtures::new();
    let tone = fx.tone_wav("tone.wav", 440.0, 2.0, 16_000, 1);
    let m4a = audio::read(&fx.ffmpeg(&tone, "tone.m4a", &["-c:a", "aac", "-b:a", "24k"]));
    let mime = Some("audio/mp4");
    bounded("the real M4A", &m4a, mime).expect("the real M4A decodes");

    // Full boxes: version+flags (4 bytes), then the entry count (or, for stsz, the sample
    // size and then the count).
    for (what, name, count_at) in [
        ("stsz claiming 2^30 samples", b"stsz", 8),
        ("stts claiming 2^30 entries", b"stts", 4),
        ("stsc claiming 2^30 entries", b"stsc", 4),
        ("stco claiming 2^30 chunks", b"stco", 4),
    ] {
        let mut lie = m4a.clone();
        let at = find_box(&lie, name) + count_at;
        lie[at..at + 4].copy_from_slice(&(1u32 << 30).to_be_bytes());
        let _ = bounded(what, &lie, mime);
    }

    // The moov box claiming 4 GB.
    let mut moov = m4a.clone();
    let at = find_box(&moov, b"moov") - 8;
    moov[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    let _ = bounded("moov claiming 4 GB", &moov, mime);
}
