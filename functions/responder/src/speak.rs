//! Voice replies in the delivery: the answer spoken ([`crate::voice`]), uploaded to the
//! Graph API's media and sent as one voice message, recorded in the reply record like a
//! text part (so a redelivery never sends it twice). Failure never costs the answer:
//! when the engine, the synthesis, the encoding or the upload fails, or the answer is
//! too long for a voice note, the text parts go out instead, and `VoiceFallbacks` says
//! why.

use std::sync::Arc;
use std::time::{Duration, Instant};

use remedios_shared::clock::Deadline;
use remedios_shared::envelope::InboundMessage;
use remedios_shared::graph::{ErrorClass, GraphError, Recipient};
use remedios_shared::metrics::{Metrics, Unit};
use remedios_shared::store::Store;
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::deliver::Courier;
use crate::ledger::{ReplyRecord, VoiceReply};
use crate::outcome::RetryLater;
use crate::voice::settings::VoiceSettings;
use crate::voice::{Speaker, Spoken, VoiceError};

/// WhatsApp shows a voice message of at most this many bytes as a voice note (a bigger
/// one as a file).
pub const VOICE_NOTE_MAX_BYTES: usize = 512 * 1024;
/// The voice note's MIME type as uploaded.
const VOICE_MIME: &str = "audio/ogg; codecs=opus";
/// What speaking keeps of the invocation for sending the text instead, should it run out
/// of time (a slow container, too little memory): the text always gets its turn.
const TEXT_MARGIN: Duration = Duration::from_secs(10);
/// Less than this left: the text goes at once.
const SPEAK_MIN: Duration = Duration::from_secs(2);

/// The speech engine, loaded at a container's first voice reply (never when no voice
/// reply is wanted: a cold start pays nothing for it).
#[derive(Debug)]
pub struct VoiceEngine {
    settings: VoiceSettings,
    /// The bucket, for voices kept there.
    store: Store,
    loaded: OnceCell<Result<Arc<Speaker>, String>>,
}

impl VoiceEngine {
    pub fn new(settings: VoiceSettings, store: Store) -> Self {
        VoiceEngine {
            settings,
            store,
            loaded: OnceCell::new(),
        }
    }

    /// The loaded engine, or why it cannot load (said once per container in the log).
    async fn speaker(&self) -> Result<Arc<Speaker>, String> {
        self.loaded
            .get_or_init(|| async {
                let started = Instant::now();
                let loaded = match self.settings.voice_files(&self.store).await {
                    Ok(voices) => {
                        let files = self.settings.files(voices);
                        tokio::task::spawn_blocking(move || Speaker::load(&files, 2))
                            .await
                            .map_err(|e| format!("the speech engine's loader failed: {e}"))
                            .and_then(|r| r.map_err(|e| e.to_string()))
                    }
                    Err(e) => Err(e.to_string()),
                };
                match &loaded {
                    Ok(_) => info!(
                        load_ms = started.elapsed().as_millis() as u64,
                        "speech engine loaded"
                    ),
                    Err(e) => warn!(error = %e, "the speech engine cannot load: answers go as text (check VOICE_ENGINE_DIR and VOICES)"),
                }
                loaded.map(Arc::new)
            })
            .await
            .clone()
    }
}

/// Why an answer was not spoken.
enum NotSpoken {
    /// The text goes instead, for this reason (a metric's `Cause`).
    Fallback(&'static str),
    /// The Graph API refused for now: the job comes back.
    Retry(RetryLater),
}

fn graph_failure(error: GraphError, stage: &'static str) -> NotSpoken {
    match error.class() {
        class @ (ErrorClass::RateLimited | ErrorClass::Transient) => {
            NotSpoken::Retry(RetryLater::Graph { class, error })
        }
        ErrorClass::Auth => NotSpoken::Retry(RetryLater::Auth(error)),
        ErrorClass::Reengagement | ErrorClass::Permanent => {
            warn!(code = error.code(), error = %error, stage, "the Graph API refused the voice reply; sending the text");
            NotSpoken::Fallback(stage)
        }
    }
}

impl Courier {
    /// Speaks the answer of `record` and sends it as a voice message: the record with
    /// the voice message's id, or with why the text goes instead. `Err` leaves the job to
    /// come back (the Graph API refused for now).
    pub(crate) async fn speak(
        &self,
        message: &InboundMessage,
        recipient: &Recipient,
        record: &ReplyRecord,
        voice: &VoiceReply,
        deadline: Deadline,
    ) -> Result<ReplyRecord, RetryLater> {
        let mut updated = record.clone();
        let outcome = self
            .speak_and_send(message, recipient, record, voice, deadline)
            .await;
        let slot = updated.voice.get_or_insert_with(|| voice.clone());
        match outcome {
            Ok(id) => {
                slot.sent = Some(id);
                Metrics::of("responder")
                    .value("VoiceReplies", Unit::Count, 1.0)
                    .emit();
            }
            Err(NotSpoken::Fallback(cause)) => {
                slot.fell_back = Some(cause.to_owned());
                count_fallback(cause);
            }
            Err(NotSpoken::Retry(e)) => return Err(e),
        }
        Ok(updated)
    }

    async fn speak_and_send(
        &self,
        message: &InboundMessage,
        recipient: &Recipient,
        record: &ReplyRecord,
        voice: &VoiceReply,
        deadline: Deadline,
    ) -> Result<String, NotSpoken> {
        let text = match &record.remember {
            Some(exchange) => exchange.answer.clone(),
            None => record.parts.join("\n"),
        };
        if text.chars().count() > self.voice.settings.max_chars {
            return Err(NotSpoken::Fallback("too_long"));
        }
        // Loading the engine (a cold start) and speaking, within what the invocation can
        // spare: past it the text goes instead (the blocking work finishes unheeded).
        let limit = self.voice.settings.time_limit;
        let budget = deadline.budget(limit, TEXT_MARGIN);
        if budget < SPEAK_MIN.min(limit) {
            return Err(NotSpoken::Fallback("out_of_time"));
        }
        let lang = voice.lang.clone();
        let speaking = async {
            let speaker = self
                .voice
                .speaker()
                .await
                .map_err(|_| NotSpoken::Fallback("engine"))?;
            tokio::task::spawn_blocking(move || speaker.speak(&text, &lang))
                .await
                .map_err(|_| NotSpoken::Fallback("synthesis"))?
                .map_err(|e: VoiceError| {
                    warn!(error = %e, "the answer could not be spoken; sending the text");
                    NotSpoken::Fallback(e.cause())
                })
        };
        let spoken = match tokio::time::timeout(budget, speaking).await {
            Ok(spoken) => spoken?,
            Err(_) => {
                warn!(
                    budget_ms = budget.as_millis() as u64,
                    "speaking the answer took longer than the invocation can spare; sending the text"
                );
                return Err(NotSpoken::Fallback("out_of_time"));
            }
        };
        count_synthesis(&spoken);
        if spoken.ogg.len() > VOICE_NOTE_MAX_BYTES {
            return Err(NotSpoken::Fallback("too_long"));
        }
        let media = self
            .graph
            .upload_media(
                &message.phone_number_id,
                spoken.ogg,
                VOICE_MIME,
                "answer.ogg",
            )
            .await
            .map_err(|e| graph_failure(e, "upload"))?;
        self.graph
            .send_voice(&message.phone_number_id, recipient, &media)
            .await
            .map(|sent| sent.id)
            .map_err(|e| graph_failure(e, "send"))
    }
}

/// An answer that was to be spoken went as text, by why (`engine`, `voice`,
/// `synthesis`, `encoding`, `too_long`, `out_of_time`, `upload`, `send`, `no_voice`).
pub(crate) fn count_fallback(cause: &'static str) {
    Metrics::of("responder")
        .dimension("Cause", cause)
        .value("VoiceFallbacks", Unit::Count, 1.0)
        .emit();
}

/// Whether and how the answer to `job` is spoken: a [`VoiceReply`] in the language of
/// the user's note (else of the conversation, `language`), when `settings` want one for
/// this user (`preference`: their `/voice on|off`) and a voice speaks that language. A
/// spoken answer is the answer alone: a transcript quoted before it (`ECHO_TRANSCRIPT`)
/// is left out, as WhatsApp shows many users its own transcript of voice notes.
pub(crate) fn voice_reply(
    settings: &VoiceSettings,
    job: &remedios_shared::envelope::ReplyJob,
    preference: Option<bool>,
    language: crate::texts::Lang,
    reply_mode: crate::config::ReplyMode,
) -> Option<VoiceReply> {
    use remedios_shared::envelope::{Content, Prepared};
    // `REPLY_MODE=both` asks for the transcript as a message of its own: a voice reply
    // would drop it.
    if reply_mode == crate::config::ReplyMode::Both {
        return None;
    }
    let (voice_note, heard) = match (&job.message.content, &job.prepared) {
        (Content::Audio { .. }, Prepared::Transcribed { language, .. }) => (true, language.clone()),
        _ => (false, None),
    };
    if !settings.wanted(voice_note, preference) {
        return None;
    }
    let lang = heard.unwrap_or_else(|| language.suffix().to_ascii_lowercase());
    match settings.voice_for(&lang) {
        Some(lang) => Some(VoiceReply {
            lang,
            text_copy: settings.text_copy,
            sent: None,
            fell_back: None,
        }),
        None => {
            count_fallback("no_voice");
            None
        }
    }
}

/// How long speaking took, and how that compares with the speech's length.
fn count_synthesis(spoken: &Spoken) {
    let work = spoken.synthesis + spoken.encoding;
    let audio = spoken.audio.as_secs_f64().max(0.001);
    Metrics::of("responder")
        .value("SynthesisMs", Unit::Milliseconds, work.as_secs_f64() * 1e3)
        .value(
            "SynthesisRealTimeFactor",
            Unit::None,
            work.as_secs_f64() / audio,
        )
        .emit();
}
