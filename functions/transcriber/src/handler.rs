//! The transcriber's handler: one SQS batch of [`InboundMessage`]s in, one [`ReplyJob`] per
//! message out on the reply queue, and a [`SqsBatchResponse`] naming the records to retry.
//!
//! For every record, in order:
//! 1. the envelope is stored in S3 as the message record (`messages/…`);
//! 2. media are looked up on the Graph API, refused when over the size bound before any
//!    download, downloaded from Meta's hosts only, checked against their SHA-256 and stored
//!    in S3 with their content type (`media/…`); the caption stays in the message record;
//! 3. audio is decoded and transcribed on a blocking thread, and the transcript stored as
//!    JSON (`transcripts/…`);
//! 4. the reply job goes to the reply queue (group: the user; deduplication: the keyed
//!    message tag).
//!
//! What the user sent decides the reply job, never a batch failure: undecodable audio is
//! [`Prepared::AudioUnsupported`], media that cannot be had (gone, too big, wrong checksum,
//! off Meta's hosts) is [`Prepared::MediaUnavailable`]. Only what retrying can fix fails the
//! record: S3 or SQS errors, Graph API rate limits and server errors, an expired access
//! token (which an operator must replace; the messages wait in the queue, then the
//! dead-letter queue), and a malformed envelope (to the dead-letter queue).
//!
//! On a record's last delivery (`ApproximateReceiveCount` at `INBOUND_MAX_RECEIVE_COUNT`,
//! the queue's `maxReceiveCount`) a failure is not reported: the message is forwarded
//! with what went wrong ([`Prepared::AudioUnsupported`] for audio,
//! [`Prepared::MediaUnavailable`] for other media, as it is for text), so the responder
//! tells the user instead of the message dead-lettering unanswered. Transcription keeps
//! [`FORWARD_MARGIN`] of the invocation's time for that: audio that cannot be transcribed
//! in time is answered as unusable at once (a retry would run out the same way).
//!
//! With speech lanes on ([`crate::lanes`]), step 1 and the fair limits happen where the
//! message arrives, and a voice note (or any message of a user with one in their lane) is
//! then sent to its lane of the inbound queue instead ([`Handled::Laned`]); the lane's
//! delivery does steps 1 to 4 (1 and the limits again, which changes nothing).
//!
//! Order: records of one user form a FIFO group. Once a record of a group fails, the later
//! records of that group in the batch are not processed and are reported failed too, so
//! they are retried after it, in order.
//!
//! Redelivery is cheap and safe: a transcript already in S3 is reused (no download, no
//! whisper), stored media are read back from S3 instead of the Graph API, and the reply
//! queue deduplicates the reply job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use bytes::Bytes;
use remedios_shared::allowance::{AllowanceError, Allowances, Verdict};
use remedios_shared::clock::{Deadline, now_ms};
use remedios_shared::envelope::{
    self, Content, EnvelopeError, InboundMessage, MediaRef, Prepared, ReplyJob,
};
use remedios_shared::graph::{ErrorClass, GraphClient, GraphError, MediaInfo};
use remedios_shared::metrics::{Metrics, Unit};
use remedios_shared::queue::{self, Outgoing, Queue, QueueError};
use remedios_shared::secrets::{self, SecretError};
use remedios_shared::store::{Store, StoreError};
use remedios_shared::user::UserTag;
use remedios_shared::{aws, batch, keys};

use crate::audio::{self, AudioError, DecodeLimits};
use crate::config::Config;
use crate::lanes::{self, Lanes, Markers};
use crate::speech::{Engine, SpeechError, SpeechSettings, Transcript, Tuning};
use crate::whisper_model::{self, ModelError};

/// Why the transcriber could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read the WhatsApp access token: {0}")]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Speech(#[from] SpeechError),
    #[error("cannot build the Graph API client: {0}")]
    Graph(#[from] GraphError),
    #[error("loading the whisper model crashed: {0}")]
    Join(String),
}

/// Why a record was reported failed (SQS delivers it again; after the queue's receive
/// count it goes to the dead-letter queue).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the SQS record has no body")]
    NoBody,
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot forward the reply job: {0}")]
    Queue(#[from] QueueError),
    #[error("cannot serialise the reply job: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("Graph API ({class:?}), will retry: {source}")]
    Graph {
        class: ErrorClass,
        #[source]
        source: GraphError,
    },
    #[error("transcription failed: {0}")]
    Speech(#[from] SpeechError),
    #[error("audio decoding failed: {0}")]
    Audio(AudioError),
    #[error("a transcription task crashed: {0}")]
    Crashed(String),
    #[error("cannot count the message against the fair limits: {0}")]
    Allowance(#[from] AllowanceError),
}

impl RecordError {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RecordError::NoBody | RecordError::Envelope(_) => "malformed",
            RecordError::Store(_) | RecordError::Allowance(_) => "s3",
            RecordError::Queue(_) | RecordError::Serialize(_) => "sqs",
            RecordError::Graph {
                class: ErrorClass::Auth,
                ..
            } => "graph_auth",
            RecordError::Graph { .. } => "graph_transient",
            RecordError::Speech(_) | RecordError::Audio(_) | RecordError::Crashed(_) => {
                "transcription"
            }
        }
    }
}

/// What transcription leaves of the invocation's time for storing the transcript and
/// forwarding the reply job.
pub const FORWARD_MARGIN: Duration = Duration::from_secs(10);

/// Size and duration bounds for untrusted media, and how often a message is tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaBounds {
    /// Media larger than this are refused before download.
    pub media_max_bytes: u64,
    /// Bounds of the audio decoder.
    pub decode: DecodeLimits,
    /// The inbound queue's `maxReceiveCount`: the delivery that forwards whatever happens.
    pub max_receive_count: u32,
}

/// The whisper model as this container has it.
#[derive(Debug, Clone)]
pub enum Speech {
    Ready(Arc<Engine>),
    /// It could not be had at cold start (missing, mismatched, unreadable): voice notes get
    /// the "couldn't listen" answer, counted by the `SpeechModelUnavailable` metric, and
    /// everything else goes on. The next cold start tries again.
    Unavailable(String),
}

/// What became of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    /// Its reply job went to the reply queue.
    Forwarded(Prepared),
    /// It went to its user's speech lane, to be handled there ([`crate::lanes`]).
    Laned,
}

/// The transcriber, built once per container.
#[derive(Debug, Clone)]
pub struct Transcriber {
    store: Store,
    /// The inbound queue, when known: failed records come back after their backoff, and
    /// voice notes go to their lane.
    source: Option<Queue>,
    lanes: Lanes,
    markers: Markers,
    replies: Queue,
    graph: GraphClient,
    speech: Speech,
    limits: MediaBounds,
    allowances: Allowances,
}

/// A media file in hand: its bytes (when needed) and where it is stored.
#[derive(Debug)]
struct StoredMedia {
    key: String,
    mime_type: String,
    bytes: Option<Bytes>,
}

/// What fetching a media object gave.
#[derive(Debug)]
enum Fetched {
    /// The media, stored.
    Stored(StoredMedia),
    /// Why the user cannot have it handled (a reason for the responder).
    Unavailable(String),
}

impl Transcriber {
    pub fn new(
        store: Store,
        replies: Queue,
        graph: GraphClient,
        speech: Speech,
        limits: MediaBounds,
    ) -> Self {
        Transcriber {
            allowances: Allowances::new(store.clone(), Default::default()),
            markers: Markers::new(store.clone()),
            store,
            source: None,
            lanes: Lanes::OFF,
            replies,
            graph,
            speech,
            limits,
        }
    }

    /// Brings failed records of `source` (the inbound queue) back after their backoff.
    pub fn with_source(mut self, source: Queue) -> Self {
        self.source = Some(source);
        self
    }

    /// Transcribes voice notes in `lanes` of the inbound queue (see [`crate::lanes`]);
    /// needs [`Self::with_source`].
    pub fn with_lanes(mut self, lanes: Lanes) -> Self {
        self.lanes = lanes;
        self
    }

    /// Counts every message against `allowance` (the fair limits per user).
    pub fn with_allowance(mut self, allowance: remedios_shared::allowance::Allowance) -> Self {
        self.allowances = Allowances::new(self.store.clone(), allowance);
        self
    }

    /// Cold start: resolves the access token, fetches the model if it is in S3, loads it.
    /// A model that cannot be had does not stop the function ([`Speech::Unavailable`]):
    /// text and media are still handled, and voice notes answered.
    pub async fn connect(config: &Config, sdk: &SdkConfig) -> Result<Self, StartError> {
        let s3 = aws::s3(sdk, &config.aws);
        let [token] = secrets::load_each(sdk, [&config.access_token]).await?;
        let graph = GraphClient::new(config.graph.clone().with_token(token))?
            .with_token_source(sdk.clone(), config.access_token.clone());
        let speech = match load_speech(config, &s3).await {
            Ok(engine) => Speech::Ready(Arc::new(engine)),
            Err(e) => {
                tracing::error!(error = %e, "the whisper model is unavailable: voice notes get the \"couldn't listen\" answer until a cold start loads it (text goes on)");
                speech_unavailable();
                Speech::Unavailable(e.to_string())
            }
        };
        let sqs = aws::sqs(sdk);
        let transcriber = Transcriber::new(
            Store::new(s3, &config.bucket),
            Queue::new(sqs.clone(), &config.reply_queue_url),
            graph,
            speech,
            MediaBounds {
                media_max_bytes: config.media_max_bytes,
                decode: config.decode_limits(),
                max_receive_count: config.max_receive_count,
            },
        )
        .with_allowance(config.allowance.clone())
        .with_lanes(config.lanes);
        Ok(match &config.inbound_queue_url {
            Some(url) => transcriber.with_source(Queue::new(sqs, url)),
            None => transcriber,
        })
    }

    /// The whisper model, as loaded at cold start or why it could not be.
    pub fn speech(&self) -> &Speech {
        &self.speech
    }

    /// Handles one SQS batch without a deadline; see [`Self::handle_by`].
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_by(event, Deadline::NONE).await
    }

    /// Handles one SQS batch within the invocation's deadline; the response names the
    /// records SQS must deliver again.
    pub async fn handle_by(&self, event: SqsEvent, deadline: Deadline) -> SqsBatchResponse {
        let redelivery = batch::Redelivery {
            source: self.source.as_ref(),
            max_receive_count: self.limits.max_receive_count,
        };
        batch::in_order(&event.records, redelivery, group, |record| async move {
            let sqs_id = record.message_id.as_deref().unwrap_or_default();
            let receive_count = batch::receive_count(record);
            let from_lane = lanes::is_lane(batch::group_of(record).as_deref());
            let message = match parse(record) {
                Ok(message) => message,
                Err(error) => {
                    tracing::error!(sqs_id, kind = error.kind(), error = %error, "record failed");
                    count_retry(error.kind());
                    return Err(());
                }
            };
            let error = match self.take(&message, from_lane, deadline).await {
                Ok(Handled::Forwarded(prepared)) => {
                    tracing::info!(sqs_id, outcome = outcome(&prepared), from_lane, "forwarded");
                    count_forwarded(&prepared);
                    return Ok(());
                }
                Ok(Handled::Laned) => {
                    tracing::info!(sqs_id, "sent to its speech lane");
                    Metrics::of("transcriber")
                        .value("Laned", Unit::Count, 1.0)
                        .emit();
                    return Ok(());
                }
                Err(error) => error,
            };
            if receive_count < self.limits.max_receive_count {
                tracing::error!(sqs_id, kind = error.kind(), receive_count, error = %error, "record failed");
                count_retry(error.kind());
                return Err(());
            }
            match self.give_up(&message, &error).await {
                Ok(prepared) => {
                    tracing::error!(sqs_id, kind = error.kind(), receive_count, error = %error, outcome = outcome(&prepared), "record failed on its last delivery; forwarded so the user is told");
                    count_forwarded(&prepared);
                    Ok(())
                }
                Err(forward) => {
                    tracing::error!(sqs_id, kind = error.kind(), receive_count, error = %error, forward_error = %forward, "record failed on its last delivery and could not be forwarded; it goes to the dead-letter queue");
                    count_retry(error.kind());
                    Err(())
                }
            }
        })
        .await
    }

    /// Handles one message: in its speech lane when it is a voice note (or its user has
    /// one waiting there) and lanes are on, else at once ([`Self::process_by`]).
    /// `from_lane`: the message is its lane's delivery.
    pub async fn take(
        &self,
        message: &InboundMessage,
        from_lane: bool,
        deadline: Deadline,
    ) -> Result<Handled, RecordError> {
        let user = &message.user;
        if from_lane {
            let prepared = self.process_by(message, deadline).await?;
            self.markers.leave(user, &message.message_tag).await?;
            return Ok(Handled::Forwarded(prepared));
        }
        let inbound = match &self.source {
            Some(inbound) if self.lanes.on() => inbound,
            _ => {
                return self
                    .process_by(message, deadline)
                    .await
                    .map(Handled::Forwarded);
            }
        };
        let is_audio = matches!(message.content, Content::Audio { .. });
        if !is_audio && !self.markers.waiting(user).await? {
            return self
                .process_by(message, deadline)
                .await
                .map(Handled::Forwarded);
        }
        // Marked before it is sent, so the user's next message cannot overtake it.
        self.markers.enter(user, &message.message_tag).await?;
        let mut outgoing = Outgoing::new(message, user, lanes::dedup_id(&message.message_tag))?;
        outgoing.group_id = self.lanes.group(user);
        inbound.send_all(&[outgoing]).await?;
        Ok(Handled::Laned)
    }

    /// Prepares and forwards one message without a deadline; see [`Self::process_by`].
    pub async fn process(&self, message: &InboundMessage) -> Result<Prepared, RecordError> {
        self.process_by(message, Deadline::NONE).await
    }

    /// Stores, prepares and forwards one message; transcription stops in time to keep
    /// [`FORWARD_MARGIN`] before `deadline`.
    pub async fn process_by(
        &self,
        message: &InboundMessage,
        deadline: Deadline,
    ) -> Result<Prepared, RecordError> {
        let tag = &message.user;
        self.store
            .put_json(&keys::message_record(tag, &message.message_tag), message)
            .await?;
        let is_audio = matches!(message.content, Content::Audio { .. });
        // Reactions and system notices are never answered, so they use up nothing; what
        // staff write (from their numbers or the Business app) never counts.
        let verdict = match message.content {
            _ if !message.origin.is_user() => Verdict::Admitted,
            Content::Reaction { .. } | Content::System { .. } => Verdict::Admitted,
            _ => {
                self.allowances
                    .admit(
                        &message.sender,
                        tag,
                        &message.message_tag,
                        is_audio,
                        now_ms(),
                    )
                    .await?
            }
        };
        if let Verdict::Over {
            limit,
            until_ms,
            notify,
        } = verdict
        {
            tracing::info!(
                message = %message.message_tag,
                limit = limit.name(),
                notify,
                "over a fair limit: not handled"
            );
            let prepared = Prepared::OverLimit {
                limit,
                until_ms,
                notify,
            };
            return self.forward(message, tag, prepared).await;
        }
        let prepared = match &message.content {
            Content::Audio { media, .. } => {
                self.audio(message, tag, media, deadline.keeping(FORWARD_MARGIN))
                    .await?
            }
            content => match content.media() {
                Some(media) => match self.fetch_media(message, tag, media, false).await? {
                    Fetched::Stored(stored) => Prepared::MediaStored {
                        key: stored.key,
                        mime_type: stored.mime_type,
                    },
                    Fetched::Unavailable(reason) => Prepared::MediaUnavailable { reason },
                },
                None => Prepared::Nothing,
            },
        };
        self.forward(message, tag, prepared).await
    }

    /// The last delivery failed: forward the message with what went wrong, so the
    /// responder tells the user (text is forwarded as it is, to be answered).
    async fn give_up(
        &self,
        message: &InboundMessage,
        error: &RecordError,
    ) -> Result<Prepared, RecordError> {
        let reason = format!("failed on its last delivery ({}): {error}", error.kind());
        let prepared = match &message.content {
            Content::Audio { .. } => Prepared::AudioUnsupported { reason },
            content if content.media().is_some() => Prepared::MediaUnavailable { reason },
            _ => Prepared::Nothing,
        };
        self.forward(message, &message.user, prepared).await
    }

    /// Sends the reply job of `message` to the reply queue.
    async fn forward(
        &self,
        message: &InboundMessage,
        tag: &UserTag,
        prepared: Prepared,
    ) -> Result<Prepared, RecordError> {
        let job = ReplyJob::new(message.clone(), prepared);
        let outgoing = Outgoing::new(
            &job,
            tag,
            queue::dedup_id(message.message_tag.as_str(), None),
        )?;
        self.replies.send_all(&[outgoing]).await?;
        Ok(job.prepared)
    }

    async fn audio(
        &self,
        message: &InboundMessage,
        tag: &UserTag,
        media: &MediaRef,
        until: Deadline,
    ) -> Result<Prepared, RecordError> {
        let transcript_key = keys::transcript(tag, &message.message_tag);
        if let Some((transcript, _)) = self.store.get_json::<Transcript>(&transcript_key).await? {
            tracing::info!(message = %message.message_tag, "transcript already stored, reused");
            return Ok(transcribed(transcript, transcript_key));
        }
        let engine = match &self.speech {
            Speech::Ready(engine) => Arc::clone(engine),
            Speech::Unavailable(why) => {
                tracing::warn!(message = %message.message_tag, "a voice note cannot be heard: the whisper model is unavailable");
                speech_unavailable();
                return Ok(Prepared::AudioUnsupported {
                    reason: format!("the speech model is unavailable: {why}"),
                });
            }
        };
        let fetching = Instant::now();
        let stored = match self.fetch_media(message, tag, media, true).await? {
            Fetched::Stored(stored) => stored,
            Fetched::Unavailable(reason) => return Ok(Prepared::MediaUnavailable { reason }),
        };
        let download_ms = fetching.elapsed().as_secs_f64() * 1e3;
        let bytes = stored.bytes.unwrap_or_default();
        let mime = stored.mime_type;
        let limits = self.limits.decode.clone();
        // Decoding and whisper are CPU bound: off the async runtime.
        let outcome = tokio::task::spawn_blocking(move || {
            decode_and_transcribe(&engine, &bytes, &mime, &limits, until)
        })
        .await
        .map_err(|e| RecordError::Crashed(e.to_string()))??;
        let (transcript, decode_ms) = match outcome {
            Listened::Transcript {
                transcript,
                decode_ms,
            } => (transcript, decode_ms),
            Listened::Unusable(reason) => {
                tracing::warn!(message = %message.message_tag, %reason, "audio not transcribable");
                return Ok(Prepared::AudioUnsupported { reason });
            }
        };
        self.store.put_json(&transcript_key, &transcript).await?;
        // Best effort: a note not charged is a note the user got for free. Staff's notes
        // are not the user's.
        let charged = if message.origin.is_user() {
            self.allowances
                .charge_audio(
                    &message.sender,
                    tag,
                    &message.message_tag,
                    transcript.audio_duration_ms,
                    now_ms(),
                )
                .await
        } else {
            Ok(())
        };
        if let Err(e) = charged {
            tracing::warn!(message = %message.message_tag, error = %e, "could not charge the voice note to the user's day");
        }
        tracing::info!(
            message = %message.message_tag,
            model = transcript.model,
            language = transcript.language.as_deref(),
            audio_ms = transcript.audio_duration_ms,
            processing_ms = transcript.processing_ms,
            words = transcript.text.split_whitespace().count(),
            "transcribed"
        );
        let audio_ms = transcript.audio_duration_ms as f64;
        let processing_ms = transcript.processing_ms as f64;
        Metrics::of("transcriber")
            .dimension("Model", transcript.model.clone())
            .value("AudioSeconds", Unit::Seconds, audio_ms / 1000.0)
            .value("TranscriptionMs", Unit::Milliseconds, processing_ms)
            .value(
                "RealTimeFactor",
                Unit::None,
                if audio_ms > 0.0 {
                    processing_ms / audio_ms
                } else {
                    0.0
                },
            )
            .emit();
        Metrics::of("transcriber")
            .value("DownloadMs", Unit::Milliseconds, download_ms)
            .value("DecodeMs", Unit::Milliseconds, decode_ms)
            .emit();
        Metrics::of("transcriber")
            .dimension(
                "Language",
                transcript.language.as_deref().unwrap_or("unknown"),
            )
            .value("VoiceNotes", Unit::Count, 1.0)
            .emit();
        Ok(transcribed(transcript, transcript_key))
    }

    /// Gets a media object into S3 (from S3 itself when a delivery before this one stored
    /// it), with its bytes when `need_bytes`.
    async fn fetch_media(
        &self,
        message: &InboundMessage,
        tag: &UserTag,
        media: &MediaRef,
        need_bytes: bool,
    ) -> Result<Fetched, RecordError> {
        if let Some(mime) = media.mime_type.as_deref().filter(|m| !m.trim().is_empty()) {
            let key = keys::media(tag, &message.message_tag, extension(mime));
            let found = if need_bytes {
                self.store.get(&key).await?.map(|o| Some(o.bytes))
            } else {
                self.store.exists(&key).await?.then_some(None)
            };
            if let Some(bytes) = found {
                tracing::info!(message = %message.message_tag, "media already stored, reused");
                return Ok(Fetched::Stored(StoredMedia {
                    key,
                    mime_type: mime.to_owned(),
                    bytes,
                }));
            }
        }

        // An expired token is read again from SSM (an operator may have replaced it).
        let graph = &self.graph;
        let mut info = match graph
            .fresh_token_once(|| graph.media_info(&media.id, Some(&message.phone_number_id)))
            .await
        {
            Ok(info) => info,
            Err(e) => return graph_failure(message, "lookup", e),
        };
        if info.sha256.as_deref().is_none_or(|s| s.trim().is_empty()) {
            info.sha256 = media.sha256.clone();
        }
        let max_bytes = self.limits.media_max_bytes;
        let bytes = match graph
            .fresh_token_once(|| graph.download(&info, max_bytes))
            .await
        {
            Ok(bytes) => bytes,
            Err(e) => return graph_failure(message, "download", e),
        };
        let mime_type = content_type(&info, media);
        let key = keys::media(tag, &message.message_tag, extension(&mime_type));
        self.store.put(&key, bytes.clone(), &mime_type).await?;
        tracing::info!(
            message = %message.message_tag,
            bytes = bytes.len(),
            mime_type,
            "media stored"
        );
        Ok(Fetched::Stored(StoredMedia {
            key,
            mime_type,
            bytes: need_bytes.then_some(bytes),
        }))
    }
}

/// A record's FIFO group: its attribute, else the sender's tag (records made by hand).
fn group(record: &SqsMessage) -> Option<String> {
    batch::group_of(record).or_else(|| parse(record).ok().map(|m| m.user.as_str().to_owned()))
}

/// Reads a record's envelope.
fn parse(record: &SqsMessage) -> Result<InboundMessage, RecordError> {
    let body = record.body.as_deref().ok_or(RecordError::NoBody)?;
    Ok(envelope::decode::<InboundMessage>(body)?)
}

/// A Graph API error: retryable and auth errors fail the record; the rest (gone, too big,
/// bad checksum, forbidden host, bad request) make the media unavailable for good.
fn graph_failure(
    message: &InboundMessage,
    step: &'static str,
    error: GraphError,
) -> Result<Fetched, RecordError> {
    let class = error.class();
    match class {
        ErrorClass::RateLimited | ErrorClass::Transient | ErrorClass::Auth => {
            Err(RecordError::Graph {
                class,
                source: error,
            })
        }
        ErrorClass::Reengagement | ErrorClass::Permanent => {
            tracing::warn!(message = %message.message_tag, step, error = %error, "media unavailable");
            Ok(Fetched::Unavailable(format!(
                "media {step} failed: {error}"
            )))
        }
    }
}

/// What listening to a voice note gave.
#[derive(Debug)]
enum Listened {
    /// Its words, and how long decoding the audio took (milliseconds).
    Transcript {
        transcript: Transcript,
        decode_ms: f64,
    },
    /// Nothing: the audio itself is the problem (undecodable, too long), said why.
    Unusable(String),
}

/// Fetches (when it is in S3) and loads the whisper model `config` names.
async fn load_speech(config: &Config, s3: &aws_sdk_s3::Client) -> Result<Engine, StartError> {
    let model_path = whisper_model::resolve(&config.model, s3, &config.bucket).await?;
    let settings = SpeechSettings {
        model_path,
        language: config.language.clone(),
        threads: config.threads,
    };
    let tuning = Tuning {
        vad: config.vad,
        ..Tuning::default()
    };
    Ok(
        tokio::task::spawn_blocking(move || Engine::load_tuned(&settings, tuning))
            .await
            .map_err(|e| StartError::Join(e.to_string()))??,
    )
}

/// One `SpeechModelUnavailable`: a cold start without the model, or a voice note that
/// could not be heard for it (the template alarms on any).
fn speech_unavailable() {
    Metrics::of("transcriber")
        .value("SpeechModelUnavailable", Unit::Count, 1.0)
        .emit();
}

/// Decodes and transcribes; an error only for what is not the audio's fault.
fn decode_and_transcribe(
    engine: &Engine,
    bytes: &[u8],
    mime: &str,
    limits: &DecodeLimits,
    until: Deadline,
) -> Result<Listened, RecordError> {
    let decoding = Instant::now();
    let decoded = match audio::decode(bytes, Some(mime), limits) {
        Ok(decoded) => decoded,
        Err(AudioError::Internal(reason)) => {
            return Err(RecordError::Audio(AudioError::Internal(reason)));
        }
        Err(e) => return Ok(Listened::Unusable(e.to_string())),
    };
    let decode_ms = decoding.elapsed().as_secs_f64() * 1e3;
    match engine.transcribe_by(&decoded.samples, until) {
        Ok(transcript) => Ok(Listened::Transcript {
            transcript,
            decode_ms,
        }),
        Err(
            e @ (SpeechError::TooLong { .. }
            | SpeechError::InvalidSamples { .. }
            | SpeechError::OutOfTime { .. }),
        ) => Ok(Listened::Unusable(e.to_string())),
        Err(e) => Err(RecordError::Speech(e)),
    }
}

fn transcribed(transcript: Transcript, transcript_key: String) -> Prepared {
    Prepared::Transcribed {
        text: transcript.text,
        language: transcript.language,
        transcript_key,
        duration_ms: transcript.audio_duration_ms,
    }
}

/// The media's content type: what the Graph API says, else what the webhook said.
fn content_type(info: &MediaInfo, media: &MediaRef) -> String {
    [Some(info.mime_type.as_str()), media.mime_type.as_deref()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|m| !m.is_empty())
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// The file extension for a MIME type (parameters such as `; codecs=opus` ignored).
pub fn extension(mime: &str) -> &'static str {
    let essence = mime.split(';').next().unwrap_or_default().trim();
    match essence.to_ascii_lowercase().as_str() {
        "audio/ogg" | "audio/opus" => "ogg",
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/mp4" | "audio/x-m4a" | "audio/m4a" => "m4a",
        "audio/aac" => "aac",
        "audio/amr" => "amr",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "video/mp4" => "mp4",
        "video/3gpp" => "3gp",
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        _ => "bin",
    }
}

/// One record forwarded, by what it was prepared into.
fn count_forwarded(prepared: &Prepared) {
    Metrics::of("transcriber")
        .dimension("Outcome", outcome(prepared))
        .value("Forwarded", Unit::Count, 1.0)
        .emit();
}

/// One record failed, to be delivered again (or dead-lettered), by [`RecordError::kind`].
fn count_retry(cause: &'static str) {
    Metrics::of("transcriber")
        .dimension("Cause", cause)
        .value("Retries", Unit::Count, 1.0)
        .emit();
}

fn outcome(prepared: &Prepared) -> &'static str {
    match prepared {
        Prepared::Nothing => "nothing",
        Prepared::Transcribed { .. } => "transcribed",
        Prepared::MediaStored { .. } => "media_stored",
        Prepared::AudioUnsupported { .. } => "audio_unsupported",
        Prepared::MediaUnavailable { .. } => "media_unavailable",
        Prepared::OverLimit { .. } => "over_limit",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_follow_the_mime_type_essence() {
        assert_eq!(extension("audio/ogg; codecs=opus"), "ogg");
        assert_eq!(extension("AUDIO/MPEG"), "mp3");
        assert_eq!(extension("audio/mp4"), "m4a");
        assert_eq!(extension("image/jpeg"), "jpg");
        assert_eq!(extension("application/x-whatever"), "bin");
        assert_eq!(extension(""), "bin");
    }

    #[test]
    fn only_retryable_and_auth_graph_errors_fail_the_record() {
        let message: InboundMessage = serde_json::from_value(serde_json::json!({
            "v": 2, "phone_number_id": "1", "sender": {"wa_id": "15551234567"},
            "user": "00000000000000000000", "message_tag": "11111111111111111111",
            "id": "wamid.X", "timestamp": 0, "received_at_ms": 0,
            "content": {"type": "text", "body": "hi"}
        }))
        .unwrap();
        let api = |status: u16, code: i64| GraphError::Api {
            status,
            code,
            message: "m".into(),
            details: None,
            fbtrace_id: None,
            retry_after: None,
        };
        for retry in [api(429, 130_429), api(500, 131_000), api(401, 190)] {
            assert!(graph_failure(&message, "lookup", retry).is_err());
        }
        for gone in [
            api(404, 100),
            api(400, 100),
            GraphError::TooLarge { size: 2, limit: 1 },
            GraphError::Status { status: 404 },
            GraphError::ForbiddenHost { host: "x".into() },
        ] {
            let Fetched::Unavailable(reason) = graph_failure(&message, "download", gone).unwrap()
            else {
                panic!("the media must be unavailable");
            };
            assert!(reason.starts_with("media download failed: "), "{reason}");
        }
    }
}
