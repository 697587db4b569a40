//! What the fuzz targets check (`fuzz/`, run by `scripts/fuzz.sh`), shared with the tests
//! that replay their seeds and every crashing input they ever found
//! (`tests/tests/fuzz_regressions.rs`): hostile bytes go in, and the result must be bounded
//! and consistent. Every check is an `assert!`, so a violation is a crash to the fuzzer and
//! a failure to the test suite.
//!
//! - [`webhook_body`]: a signed webhook body through the webhook's planner
//!   ([`webhook::intake::triage`]), with and without an allow-list, and through
//!   [`webhook::intake::verify_and_triage`] with the right and a wrong signature.
//! - [`audio_decode`]: a media file through [`transcriber::audio::decode`] under
//!   [`fuzz_decode_limits`], with a MIME hint picked by the first byte.

use std::time::Duration;

use remedios_shared::envelope::{self, InboundMessage};
use remedios_shared::queue::{self, Outgoing};
use remedios_shared::signature::{self, SignatureError};
use remedios_shared::user::{SenderList, TagKey};
use transcriber::audio::{self, AudioError, DecodeLimits, DecodedAudio, TARGET_SAMPLE_RATE};
use webhook::intake::{self, Intake, Triage};

/// The clock the fuzzed webhook runs at (Unix milliseconds).
pub const NOW_MS: i64 = 1_750_000_000_000;
/// The app secret the fuzzed bodies are signed with.
pub const APP_SECRET: &[u8] = b"fuzz-app-secret";
/// The allow-list of the restricted run: a phone number and a business-scoped id that
/// appear in the seeds (`fuzz/seeds/webhook_body`).
pub const ALLOWED_SENDERS: &str = "+1 (555) 010-0001, US.1349";
/// The key the fuzzed webhook tags users with.
pub const USER_TAG_KEY: &str = "fuzz-user-tag-key-fuzz-user-tag-key";

fn intake(allow: SenderList) -> Intake {
    Intake {
        allow,
        staff: SenderList::default(),
        tags: tags(),
        numbers: Vec::new(),
    }
}

fn tags() -> TagKey {
    match TagKey::new(USER_TAG_KEY) {
        Ok(key) => key,
        Err(e) => panic!("{e}"),
    }
}

/// Triages `body` as the webhook would after a good signature, and checks that:
///
/// - every queue message is a body SQS accepts, decodes back into an envelope of this
///   version with the same message id, and is grouped and deduplicated as the webhook
///   promises (group = the sender's tag, dedup id = the message's keyed tag);
/// - the allow-list only removes messages: open = allowed + refused, nothing else changes;
/// - a signed body verifies and triages the same; a wrong signature is refused.
///
/// Returns the triage of the open (no allow-list) run.
pub fn webhook_body(body: &[u8]) -> Triage {
    let open = intake::triage(body, NOW_MS, &intake(SenderList::default()));
    assert_eq!(
        open.refused_senders, 0,
        "an open allow-list refused someone"
    );
    for outgoing in &open.messages {
        check_outgoing(outgoing);
    }

    let restricted = intake::triage(
        body,
        NOW_MS,
        &intake(SenderList::parse(Some(ALLOWED_SENDERS))),
    );
    assert_eq!(
        open.messages.len(),
        restricted.messages.len() + restricted.refused_senders,
        "the allow-list must only drop messages"
    );
    assert_eq!(open.statuses, restricted.statuses);
    assert_eq!(open.quarantine, restricted.quarantine);
    let mut kept = open.messages.iter();
    for allowed in &restricted.messages {
        assert!(
            kept.any(|m| m == allowed),
            "the allow-list changed or reordered a message"
        );
    }

    let header = signature::sign(APP_SECRET, body);
    match intake::verify_and_triage(
        APP_SECRET,
        Some(header.as_bytes()),
        body,
        NOW_MS,
        &intake(SenderList::default()),
    ) {
        Ok(signed) => assert_eq!(signed, open, "a signed body planned differently"),
        Err(e) => panic!("a body signed with the app secret was refused: {e}"),
    }
    let wrong = signature::sign(b"another-secret", body);
    assert_eq!(
        intake::verify_and_triage(
            APP_SECRET,
            Some(wrong.as_bytes()),
            body,
            NOW_MS,
            &intake(SenderList::default())
        ),
        Err(SignatureError::Mismatch)
    );
    // The body itself as the header value: never accepted, whatever it holds.
    assert!(signature::verify(APP_SECRET, body, Some(body)).is_err());
    open
}

fn check_outgoing(outgoing: &Outgoing) {
    assert!(
        queue::sqs_accepts(&outgoing.body),
        "a queue body SQS would refuse"
    );
    let message: InboundMessage = match envelope::decode(&outgoing.body) {
        Ok(m) => m,
        Err(e) => panic!("a planned queue body does not decode back: {e}"),
    };
    assert_eq!(message.v, envelope::ENVELOPE_VERSION);
    assert_eq!(message.received_at_ms, NOW_MS);
    assert!(!message.id.is_empty(), "a queued message without an id");
    assert!(
        message.sender.wa_id.is_some() || message.sender.user_id.is_some(),
        "a queued message without a sender"
    );
    assert_eq!(
        outgoing.group_id,
        message.user.as_str(),
        "the FIFO group is not the sender's tag"
    );
    assert_eq!(
        message.user,
        message.user_key().tag(&tags()),
        "the tag is not the keyed tag of the sender"
    );
    assert_eq!(
        message.message_tag,
        tags().message(&message.id),
        "the message tag is not the keyed tag of its id"
    );
    assert_eq!(
        outgoing.dedup_id,
        queue::dedup_id(message.message_tag.as_str(), None)
    );
    assert!(
        (1..=128).contains(&outgoing.dedup_id.len())
            && outgoing.dedup_id.bytes().all(|b| b.is_ascii_graphic()),
        "a deduplication id SQS would refuse"
    );
    // Serialising the decoded envelope again gives a body that decodes to the same
    // envelope (floats aside, which JSON may round in the last place).
    let again = match queue::body(&message) {
        Ok(b) => b,
        Err(e) => panic!("a decoded envelope does not serialise again: {e}"),
    };
    let back: InboundMessage = match envelope::decode(&again) {
        Ok(m) => m,
        Err(e) => panic!("a re-serialised envelope does not decode: {e}"),
    };
    assert_eq!(
        (&back.id, &back.sender, back.content.kind(), &back.context),
        (
            &message.id,
            &message.sender,
            message.content.kind(),
            &message.context
        )
    );
}

/// The limits audio is fuzzed under: small, so that a slow input shows up as a slow
/// input and not as a long file.
pub fn fuzz_decode_limits() -> DecodeLimits {
    DecodeLimits {
        max_duration: Duration::from_secs(20),
        max_channels: 2,
        max_bad_packets: 4,
    }
}

/// The MIME type the sender "declared", picked by the first byte of the input (which is
/// also part of the file): none, the right one for a common format, or a wrong one.
pub fn audio_mime_hint(data: &[u8]) -> Option<&'static str> {
    const HINTS: [Option<&str>; 8] = [
        None,
        Some("audio/ogg; codecs=opus"),
        Some("audio/mpeg"),
        Some("audio/mp4"),
        Some("audio/wav"),
        Some("audio/flac"),
        Some("audio/amr"),
        Some("application/octet-stream"),
    ];
    HINTS[usize::from(data.first().copied().unwrap_or(0)) % HINTS.len()]
}

/// Decodes `data` under [`fuzz_decode_limits`] and checks that a success is bounded and
/// self-consistent: not empty, within the duration limit (allowing for the rounding of
/// each resampled segment), samples finite and within -1.0..=1.0, within the channel
/// limit, at a plausible source rate.
pub fn audio_decode(data: &[u8]) -> Result<DecodedAudio, AudioError> {
    let limits = fuzz_decode_limits();
    let result = audio::decode(data, audio_mime_hint(data), &limits);
    if let Ok(decoded) = &result {
        check_decoded(decoded, &limits);
    }
    result
}

/// The bounds every successful decode under `limits` keeps.
pub fn check_decoded(decoded: &DecodedAudio, limits: &DecodeLimits) {
    // The duration limit applies to the input; each of at most 17 resampled segments may
    // round its output up by half a sample.
    let max_samples = limits.max_duration.as_secs_f64() * f64::from(TARGET_SAMPLE_RATE) + 32.0;
    assert!(!decoded.samples.is_empty(), "a success without samples");
    assert!(
        decoded.samples.len() as f64 <= max_samples,
        "{} samples exceed the limit of {} s",
        decoded.samples.len(),
        limits.max_duration.as_secs()
    );
    assert_eq!(
        decoded.duration,
        Duration::from_secs_f64(decoded.samples.len() as f64 / f64::from(TARGET_SAMPLE_RATE))
    );
    assert!(
        (1..=limits.max_channels).contains(&decoded.source_channels),
        "{} channels with a limit of {}",
        decoded.source_channels,
        limits.max_channels
    );
    // whisper.cpp wants samples in -1.0..=1.0; NaN or infinity would poison its features.
    if let Some(bad) = decoded
        .samples
        .iter()
        .find(|s| !(s.is_finite() && s.abs() <= 1.0))
    {
        panic!("a sample of {bad} is outside -1.0..=1.0");
    }
    assert!(
        (4_000..=384_000).contains(&decoded.source_sample_rate),
        "an implausible source rate of {} Hz",
        decoded.source_sample_rate
    );
}
