//! The loaded model: [`Engine::load`] once per container, [`Engine::transcribe`] per note.

use std::borrow::Cow;
use std::ffi::c_int;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use remedios_shared::clock::Deadline;

use super::error::whisper_error;
use super::language::language_code;
use super::model_file::check_model_file;
use super::vad::{Timeline, Vad};
use super::{
    Language, MAX_AUDIO_DURATION, MAX_THREADS, MIN_SAMPLES, RATE, SILENCE_PEAK, Segment,
    SpeechError, SpeechSettings, Transcript, Tuning, chunks,
};

/// A loaded whisper model, ready to transcribe.
///
/// `Send + Sync`: the model (whisper.cpp's context) is read-only after loading, and each
/// [`Engine::transcribe`] call creates its own decoding state (buffers and caches, a few
/// ms to set up), so concurrent calls neither share mutable state nor wait on a lock.
pub struct Engine {
    ctx: WhisperContext,
    model: String,
    multilingual: bool,
    /// The language forced for every message (`Some("en")` for English-only models).
    forced: Option<String>,
    threads: usize,
    load_time: Duration,
    tuning: Tuning,
    /// How many times whisper.cpp has run the encoder for this engine (boxed: the
    /// encoder callback holds its address).
    encodes: Box<AtomicUsize>,
    /// Voice activity detection, when [`Tuning::vad`] is on.
    vad: Option<Vad>,
}

/// The least audio voice activity detection must leave out of a note with speech for
/// whisper to hear the stretches of speech instead of the whole note: 2 s. Below it the
/// saving is a fraction of one encoder window, and the chunks' cuts would move for
/// nothing (on a 60 s Spanish note with short pauses they fell elsewhere, WER 0.303
/// against 0.261).
const MIN_PAUSES_LEFT_OUT_MS: u32 = 2_000;

/// whisper.cpp's `encoder_begin_callback`: counts one encoder run in the `AtomicUsize`
/// `user_data` points to, and lets it go ahead.
unsafe extern "C" fn count_encode(
    _ctx: *mut whisper_rs::whisper_rs_sys::whisper_context,
    _state: *mut whisper_rs::whisper_rs_sys::whisper_state,
    user_data: *mut std::ffi::c_void,
) -> bool {
    // SAFETY: `user_data` is the address of an engine's `encodes`, set by
    // `Engine::full_params`; the engine outlives every `full` call made with its params.
    if let Some(encodes) = unsafe { (user_data as *const AtomicUsize).as_ref() } {
        encodes.fetch_add(1, Ordering::Relaxed);
    }
    true
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("model", &self.model)
            .field("multilingual", &self.multilingual)
            .field("forced", &self.forced)
            .field("threads", &self.threads)
            .field("load_time", &self.load_time)
            .field("tuning", &self.tuning)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads the model of `settings` with the default [`Tuning`].
    ///
    /// Fails with a clear error if the file is missing or not a GGML whisper model, if the
    /// thread count is out of range, or if the forced language is unknown or not supported by
    /// the model (a non-English language on a `.en` model).
    pub fn load(settings: &SpeechSettings) -> Result<Self, SpeechError> {
        Self::load_tuned(settings, Tuning::default())
    }

    /// Loads the model of `settings` with explicit decoding knobs (benchmarks, experiments).
    pub fn load_tuned(settings: &SpeechSettings, tuning: Tuning) -> Result<Self, SpeechError> {
        let started = Instant::now();
        if !(1..=MAX_THREADS).contains(&settings.threads) {
            return Err(SpeechError::InvalidThreads {
                threads: settings.threads,
            });
        }
        // Normalise (and validate) a forced language before the expensive load.
        let forced = match &settings.language {
            Language::Auto => None,
            Language::Forced(code) => Some(language_code(code)?),
        };
        let path = settings.model_path.as_path();
        check_model_file(path)?;
        let model = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "whisper".to_owned());

        whisper_rs::install_logging_hooks();
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false).flash_attn(tuning.flash_attention);
        let ctx =
            WhisperContext::new_with_params(path, params).map_err(|e| SpeechError::ModelLoad {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        let multilingual = ctx.is_multilingual();
        let forced = match forced {
            Some(code) if !multilingual && code != "en" => {
                return Err(SpeechError::LanguageNotSupported {
                    model,
                    language: code.to_owned(),
                });
            }
            Some(code) => Some(code.to_owned()),
            None if !multilingual => Some("en".to_owned()),
            None => None,
        };
        let vad = if tuning.vad { Some(Vad::load()?) } else { None };
        let load_time = started.elapsed();
        tracing::info!(
            model,
            kind = ctx
                .model_type_readable_str_lossy()
                .unwrap_or_default()
                .as_ref(),
            multilingual,
            language = forced.as_deref().unwrap_or("auto"),
            threads = settings.threads,
            load_ms = load_time.as_millis() as u64,
            ggml = super::system_info(),
            "whisper model loaded"
        );
        Ok(Self {
            ctx,
            model,
            multilingual,
            forced,
            threads: settings.threads,
            load_time,
            tuning,
            encodes: Box::new(AtomicUsize::new(0)),
            vad,
        })
    }

    /// The model name (the model file's stem, e.g. `ggml-base`).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether the model knows languages other than English (and can detect them).
    pub fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    /// The language every message is transcribed in, or `None` if it is detected.
    pub fn forced_language(&self) -> Option<&str> {
        self.forced.as_deref()
    }

    /// How long [`Engine::load`] took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// The decoding knobs in use.
    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    /// Transcribes 16 kHz mono samples (as [`crate::audio::decode`] gives them).
    ///
    /// Synchronous and CPU bound: call it from `spawn_blocking`. Empty, very short (< 100 ms)
    /// or silent audio gives an empty transcript, not an error. Audio longer than
    /// [`MAX_AUDIO_DURATION`] or with non-finite samples is refused.
    pub fn transcribe(&self, samples: &[f32]) -> Result<Transcript, SpeechError> {
        self.transcribe_by(samples, Deadline::NONE)
    }

    /// [`Self::transcribe`], stopping with [`SpeechError::OutOfTime`] before a chunk that
    /// would not finish by `until` (judged by the slowest chunk so far).
    pub fn transcribe_by(
        &self,
        samples: &[f32],
        until: Deadline,
    ) -> Result<Transcript, SpeechError> {
        let started = Instant::now();
        let audio_duration_ms = ms(samples.len());
        if audio_duration_ms > MAX_AUDIO_DURATION.as_millis() as u64 {
            return Err(SpeechError::TooLong {
                duration_ms: audio_duration_ms,
            });
        }
        if let Some(index) = samples.iter().position(|s| !s.is_finite()) {
            return Err(SpeechError::InvalidSamples { index });
        }
        let mut transcript = Transcript {
            text: String::new(),
            language: self.forced.clone(),
            segments: Vec::new(),
            model: self.model.clone(),
            audio_duration_ms,
            speech_ms: 0,
            processing_ms: 0,
        };
        let peak = samples.iter().fold(0.0f32, |peak, s| peak.max(s.abs()));
        if samples.len() < MIN_SAMPLES || peak < SILENCE_PEAK {
            tracing::debug!(audio_duration_ms, peak, "no speech to transcribe");
            transcript.processing_ms = started.elapsed().as_millis() as u64;
            return Ok(transcript);
        }
        // What whisper hears: the stretches of speech, or the whole note without VAD.
        let (heard, timeline) = match &self.vad {
            Some(vad) => {
                let speech = vad.speech(samples)?;
                if speech.is_empty() {
                    tracing::debug!(audio_duration_ms, "no speech found in the note");
                    transcript.processing_ms = started.elapsed().as_millis() as u64;
                    return Ok(transcript);
                }
                let kept: usize = speech.iter().map(ExactSizeIterator::len).sum();
                if samples.len() - kept < samples_in(MIN_PAUSES_LEFT_OUT_MS) {
                    // Next to nothing to leave out: whisper hears the note as it is, cut
                    // where its own quiet falls.
                    (Cow::Borrowed(samples), Timeline::whole(samples.len()))
                } else {
                    let (joined, timeline) = Timeline::join(samples, &speech);
                    (Cow::Owned(joined), timeline)
                }
            }
            None => (Cow::Borrowed(samples), Timeline::whole(samples.len())),
        };
        let samples = &heard[..];
        let heard_ms = ms(samples.len());
        transcript.speech_ms = heard_ms;

        let chunks: Vec<std::ops::Range<usize>> = self
            .chunks(samples, &timeline.stretches())
            .into_iter()
            .filter(|chunk| {
                let audio = &samples[chunk.clone()];
                let chunk_peak = audio.iter().fold(0.0f32, |peak, s| peak.max(s.abs()));
                audio.len() >= MIN_SAMPLES && chunk_peak >= SILENCE_PEAK
            })
            .collect();
        let mut state = self
            .ctx
            .create_state()
            .map_err(whisper_error("creating a decoding state"))?;
        let mut detect_ms = 0;
        let language = match (&self.forced, chunks.first()) {
            (Some(code), _) => Some(code.clone()),
            (None, Some(first)) => {
                let detect_started = Instant::now();
                let audio = &samples[first.clone()];
                let code =
                    self.detect_language(&mut state, audio, self.tuning.window_for(audio.len()))?;
                detect_ms = detect_started.elapsed().as_millis() as u64;
                Some(code)
            }
            (None, None) => None,
        };
        let out_of_time = |chunk: &std::ops::Range<usize>| SpeechError::OutOfTime {
            done_ms: ms(timeline.in_note(chunk.start)),
            duration_ms: audio_duration_ms,
        };
        let workers = if self.tuning.parallel_chunks && !self.tuning.condition_on_previous_text {
            self.threads.min(chunks.len()).max(1)
        } else {
            1
        };
        let code = language.clone().unwrap_or_else(|| "en".to_owned());
        let several = chunks.len() > 1;
        let mut by_chunk: Vec<Vec<Segment>> = if workers > 1 {
            // Each worker its own state and its share of the threads, on every
            // `workers`-th chunk; the first keeps the state that detected the language.
            let threads = self.threads / workers;
            let mut states = vec![state];
            for _ in 1..workers {
                states.push(
                    self.ctx
                        .create_state()
                        .map_err(whisper_error("creating a decoding state"))?,
                );
            }
            let results: Vec<Result<Vec<Numbered>, SpeechError>> = std::thread::scope(|scope| {
                let handles: Vec<_> = states
                    .into_iter()
                    .enumerate()
                    .map(|(worker, mut state)| {
                        let (chunks, code, samples) = (&chunks, &code, samples);
                        let out_of_time = &out_of_time;
                        scope.spawn(move || {
                            let mut done = Vec::new();
                            let mut slowest = Duration::ZERO;
                            for (i, chunk) in
                                chunks.iter().enumerate().skip(worker).step_by(workers)
                            {
                                if until.remaining().is_some_and(|left| left <= slowest) {
                                    return Err(out_of_time(chunk));
                                }
                                let chunk_started = Instant::now();
                                let segments = self.transcribe_chunk(
                                    &mut state, samples, chunk, code, threads, several, false,
                                    heard_ms,
                                )?;
                                done.push((i, segments));
                                slowest = slowest.max(chunk_started.elapsed());
                            }
                            Ok(done)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(SpeechError::Whisper {
                                stage: "transcribing",
                                reason: "a decoding thread panicked".into(),
                            })
                        })
                    })
                    .collect()
            });
            let mut by_chunk = vec![Vec::new(); chunks.len()];
            for result in results {
                for (i, segments) in result? {
                    by_chunk[i] = segments;
                }
            }
            by_chunk
        } else {
            let mut by_chunk = Vec::with_capacity(chunks.len());
            let mut spoken_before = false;
            let mut slowest = Duration::ZERO;
            for chunk in &chunks {
                if until.remaining().is_some_and(|left| left <= slowest) {
                    return Err(out_of_time(chunk));
                }
                let chunk_started = Instant::now();
                // Later chunks continue the text of the earlier ones, as whisper.cpp's own
                // windows do.
                let segments = self.transcribe_chunk(
                    &mut state,
                    samples,
                    chunk,
                    &code,
                    self.threads,
                    several,
                    spoken_before && self.tuning.condition_on_previous_text,
                    heard_ms,
                )?;
                spoken_before |= !segments.is_empty();
                by_chunk.push(segments);
                slowest = slowest.max(chunk_started.elapsed());
            }
            by_chunk
        };
        // In order, each segment starting no earlier than the one before ends.
        let mut previous_end = 0;
        for mut segment in by_chunk.drain(..).flatten() {
            segment.start_ms = segment.start_ms.max(previous_end).min(segment.end_ms);
            previous_end = segment.end_ms;
            transcript.segments.push(segment);
        }

        // Times count from the start of the note, pauses included.
        let in_note = |at_ms: u64| {
            ms(timeline.in_note((at_ms as usize).saturating_mul(RATE) / 1000))
                .min(audio_duration_ms)
        };
        for segment in &mut transcript.segments {
            segment.start_ms = in_note(segment.start_ms);
            segment.end_ms = in_note(segment.end_ms).max(segment.start_ms);
        }
        transcript.text = join_segments(&transcript.segments);
        transcript.language = language;
        transcript.processing_ms = started.elapsed().as_millis() as u64;
        tracing::debug!(
            model = self.model,
            language = transcript.language.as_deref(),
            audio_ms = audio_duration_ms,
            chunks = chunks.len(),
            speech_ms = heard_ms,
            detect_ms,
            processing_ms = transcript.processing_ms,
            segments = transcript.segments.len(),
            words = transcript.text.split_whitespace().count(),
            "transcribed"
        );
        Ok(transcript)
    }

    /// The pieces `samples` is transcribed in: one, or chunks cut at pauses for audio too
    /// long for one shrunk window (see [`Tuning::split_long`]). `stretches` are the
    /// stretches of speech voice activity detection left (the whole audio without it): a
    /// chunk holds whole stretches while they fit, so each cut falls in a pause it found,
    /// and a stretch too long for a chunk is cut at its quietest moments.
    fn chunks(
        &self,
        samples: &[f32],
        stretches: &[std::ops::Range<usize>],
    ) -> Vec<std::ops::Range<usize>> {
        let tuning = &self.tuning;
        let one_piece = tuning.window_for(samples.len()) > 0
            && samples.len() <= samples_in(tuning.split_above_ms);
        if !(tuning.split_long && tuning.shrink_window) || one_piece {
            return std::iter::once(0..samples.len()).collect();
        }
        let max_len = samples_in(tuning.max_chunk_ms);
        let mut chunks: Vec<std::ops::Range<usize>> = Vec::new();
        let mut open: Option<std::ops::Range<usize>> = None;
        for stretch in stretches {
            if stretch.len() > max_len {
                chunks.extend(open.take());
                let offset = stretch.start;
                chunks.extend(
                    chunks::plan(&samples[stretch.clone()], max_len)
                        .into_iter()
                        .map(|c| c.start + offset..c.end + offset),
                );
                continue;
            }
            match &mut open {
                Some(chunk) if stretch.end - chunk.start <= max_len => chunk.end = stretch.end,
                _ => {
                    chunks.extend(open.take());
                    open = Some(stretch.clone());
                }
            }
        }
        chunks.extend(open);
        chunks
    }

    /// The segments of `chunk` of `samples` (times from the start of `samples`), decoded in
    /// `language` with `threads` threads; `several`: the note is cut into chunks;
    /// `context`: continue from the text `state` decoded before.
    #[allow(clippy::too_many_arguments)]
    fn transcribe_chunk(
        &self,
        state: &mut WhisperState,
        samples: &[f32],
        chunk: &std::ops::Range<usize>,
        language: &str,
        threads: usize,
        several: bool,
        context: bool,
        heard_ms: u64,
    ) -> Result<Vec<Segment>, SpeechError> {
        let audio = &samples[chunk.clone()];
        let window = self.tuning.window_for(audio.len());
        let mut params = self.full_params(language, window);
        // Bounded by MAX_THREADS, far below c_int::MAX.
        params.set_n_threads(threads.max(1) as c_int);
        if several && self.tuning.single_segment_chunks {
            params.set_single_segment(true);
        }
        params.set_no_context(!context);
        state
            .full(params, audio)
            .map_err(whisper_error("transcribing"))?;
        let mut segments = Vec::new();
        let mut previous_end = 0;
        collect_segments(
            state,
            ms(chunk.start),
            ms(chunk.end).min(heard_ms),
            &mut previous_end,
            &mut segments,
        )?;
        Ok(segments)
    }

    /// Detects the spoken language with the encoder window `window` (0: 30 s).
    fn detect_language(
        &self,
        state: &mut WhisperState,
        samples: &[f32],
        window: usize,
    ) -> Result<String, SpeechError> {
        let (samples, window) = match self.tuning.detect_ms {
            0 => (samples, window),
            detect_ms => {
                let len = samples_in(detect_ms).min(samples.len());
                (&samples[..len], self.tuning.window_for(len))
            }
        };
        if window > 0 && self.tuning.fast_detection {
            // whisper.cpp detects the language with the encoder window of the state's last
            // `full` call (30 s for a fresh state). A `full` call limited to 100 ms of audio
            // computes the spectrogram and sets the window, then stops before encoding
            // anything (the main loop needs more than 100 ms to run).
            let mut prime = self.full_params("en", window);
            prime.set_duration_ms(100);
            state
                .full(prime, samples)
                .map_err(whisper_error("preparing language detection"))?;
        } else {
            state
                .pcm_to_mel(samples, self.threads)
                .map_err(whisper_error("computing the spectrogram"))?;
        }
        let (id, probabilities) = state
            .lang_detect(0, self.threads)
            .map_err(whisper_error("detecting the language"))?;
        let code = whisper_rs::get_lang_str(id).ok_or_else(|| SpeechError::Whisper {
            stage: "detecting the language",
            reason: format!("unknown language id {id}"),
        })?;
        let probability = usize::try_from(id)
            .ok()
            .and_then(|i| probabilities.get(i).copied())
            .unwrap_or_default();
        tracing::debug!(language = code, probability, window, "language detected");
        Ok(code.to_owned())
    }

    fn full_params<'a>(&self, language: &'a str, window: usize) -> FullParams<'a, 'static> {
        let tuning = &self.tuning;
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        // Both are bounded (MAX_THREADS, FULL_WINDOW), far below c_int::MAX.
        params.set_n_threads(self.threads as c_int);
        params.set_audio_ctx(window as c_int);
        params.set_language(Some(language));
        params.set_translate(false);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_no_context(true);
        if !tuning.condition_on_previous_text {
            params.set_n_max_text_ctx(0);
        }
        params.set_single_segment(tuning.single_segment_short && window > 0);
        params.set_suppress_blank(true);
        params.set_suppress_nst(tuning.suppress_non_speech);
        params.set_temperature(0.0);
        params.set_temperature_inc(tuning.temperature_inc);
        let encodes: *const AtomicUsize = &*self.encodes;
        // SAFETY: `count_encode` only increments the counter `encodes` points to, which
        // lives (boxed, at a fixed address) as long as this engine, and the params are
        // used only by this engine's `full` calls.
        unsafe {
            params.set_start_encoder_callback(Some(count_encode));
            params.set_start_encoder_callback_user_data(encodes as *mut std::ffi::c_void);
        }
        params
    }

    /// How many times the encoder has run for this engine: one per chunk, plus one per
    /// seek whisper.cpp makes inside a chunk (benchmarks report it per note).
    pub fn encodes(&self) -> usize {
        self.encodes.load(Ordering::Relaxed)
    }
}

/// A chunk's segments, with the chunk's place in the note.
type Numbered = (usize, Vec<Segment>);

/// Milliseconds of audio in `samples` samples.
pub(super) fn ms(samples: usize) -> u64 {
    (samples as u64).saturating_mul(1000) / RATE as u64
}

/// How many samples `ms` milliseconds of audio hold (saturating).
fn samples_in(ms: u32) -> usize {
    (ms as usize).saturating_mul(RATE) / 1000
}

/// Appends the state's segments to `segments`: times in ms shifted by `offset_ms` (where
/// the transcribed audio starts), clamped to `end_ms` (where it ends) and made monotonic
/// from `previous_end` on, annotations such as `[BLANK_AUDIO]` or `(music)` dropped.
pub(super) fn collect_segments(
    state: &WhisperState,
    offset_ms: u64,
    end_ms: u64,
    previous_end: &mut u64,
    segments: &mut Vec<Segment>,
) -> Result<(), SpeechError> {
    for segment in state.as_iter() {
        let text = segment
            .to_str_lossy()
            .map_err(whisper_error("reading the transcript"))?;
        let text = text.trim();
        if text.is_empty() || is_annotation(text) {
            continue;
        }
        // whisper.cpp's times are in centiseconds.
        let to_ms = |cs: i64| {
            u64::try_from(cs)
                .unwrap_or(0)
                .saturating_mul(10)
                .saturating_add(offset_ms)
        };
        let start_ms = to_ms(segment.start_timestamp())
            .max(*previous_end)
            .min(end_ms);
        let segment_end_ms = to_ms(segment.end_timestamp()).clamp(start_ms, end_ms);
        *previous_end = segment_end_ms;
        segments.push(Segment {
            start_ms,
            end_ms: segment_end_ms,
            text: text.to_owned(),
        });
    }
    Ok(())
}

/// Whether a segment is only a non-speech annotation whisper sometimes writes, such as
/// `[BLANK_AUDIO]`, `[Music]`, `(silence)`, `*sigh*` or `♪`.
pub(super) fn is_annotation(text: &str) -> bool {
    let enclosed = |open: char, close: char| {
        text.len() >= 2 && text.starts_with(open) && text.ends_with(close)
    };
    enclosed('[', ']')
        || enclosed('(', ')')
        || enclosed('*', '*')
        || text.chars().all(|c| !c.is_alphanumeric())
}

pub(super) fn join_segments(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_owned()
}
