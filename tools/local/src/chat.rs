//! Talking to the local stack as a WhatsApp user would (`remedios chat`, the end-to-end
//! test and the pipeline benchmark): each message goes as a signed webhook to the
//! stack's `/webhook`, through both queues and all three functions, and the reply is
//! read back from the Graph API emulator, with when each stage finished.
//!
//! Stages are observed from outside, as a user of the stack sees them: the webhook's
//! answer, the message record in S3 (the transcriber took it from the inbound queue),
//! the transcript (voice notes), and the reply recorded by the Graph API emulator.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use remedios_shared::keys;
use remedios_shared::user::{MessageTag, TagKey, UserKey, UserTag};
use thiserror::Error;

use crate::stack::StackInfo;
use remedios_emulators::graph::{EmulatorClient, Recorded};
use remedios_emulators::meta;

/// What a user sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Text(String),
    /// A text that replies to (quotes) a message the business sent, by its id: how staff
    /// answer a notification.
    Quote {
        text: String,
        quoted: String,
    },
    /// A voice note: the audio bytes and their MIME type.
    Voice {
        bytes: Vec<u8>,
        mime_type: String,
    },
}

impl Outgoing {
    /// A voice note from a WAV, OGG/Opus or MP3 file (by its extension).
    pub fn voice_file(path: &Path) -> Result<Self, ChatError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let mime_type = match ext.as_str() {
            "ogg" | "opus" | "oga" => "audio/ogg; codecs=opus",
            "mp3" => "audio/mpeg",
            "wav" => "audio/wav",
            "m4a" => "audio/mp4",
            _ => {
                return Err(ChatError::Input(format!(
                    "{} is not a .wav, .ogg or .mp3 file",
                    path.display()
                )));
            }
        };
        let bytes = std::fs::read(path)
            .map_err(|e| ChatError::Input(format!("cannot read {}: {e}", path.display())))?;
        Ok(Outgoing::Voice {
            bytes,
            mime_type: mime_type.to_owned(),
        })
    }
}

/// When each stage finished, counted from the webhook POST.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stages {
    /// The webhook answered 200 (the message is on the inbound queue).
    pub webhook: Duration,
    /// The message record is in S3 (the transcriber has it).
    pub stored: Option<Duration>,
    /// The transcript is in S3 (voice notes).
    pub transcribed: Option<Duration>,
    /// The first reply reached the Graph API emulator.
    pub replied: Duration,
}

impl Stages {
    /// `webhook 12 ms · stored 40 ms · transcribed 1.9 s · replied 3.2 s`
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("webhook {}", human(self.webhook))];
        if let Some(d) = self.stored {
            parts.push(format!("stored {}", human(d)));
        }
        if let Some(d) = self.transcribed {
            parts.push(format!("transcribed {}", human(d)));
        }
        parts.push(format!("replied {}", human(self.replied)));
        parts.join(" · ")
    }
}

/// Posts a notification to the stack's `/webhook`, signed with its app secret as Meta
/// signs it; `Ok` once the webhook answered 2xx (the message is on the inbound queue).
pub async fn post_notification(
    http: &reqwest::Client,
    info: &StackInfo,
    body: String,
) -> Result<(), ChatError> {
    let signature = meta::sign(info.app_secret.as_bytes(), body.as_bytes());
    let response = http
        .post(&info.webhook_url)
        .header("content-type", "application/json")
        .header(remedios_shared::signature::HEADER, signature)
        .body(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|source| ChatError::WebhookDown {
            url: info.webhook_url.clone(),
            source,
        })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(ChatError::WebhookRefused {
            status: status.as_u16(),
            body,
        });
    }
    Ok(())
}

/// A duration for people: `850 ms`, `3.2 s`.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// One message and what came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The WhatsApp message id we sent.
    pub message_id: String,
    /// Its keyed tag: its name in S3 keys.
    pub message_tag: MessageTag,
    /// The reply texts, in order (a voice note as [`VOICE_NOTE_MARK`] and its file).
    pub replies: Vec<String>,
    /// The voice notes among the replies, saved as Ogg/Opus files.
    pub voice_notes: Vec<std::path::PathBuf>,
    pub stages: Stages,
}

/// A message the business sent to this chat's party, by the Graph API emulator's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Its WhatsApp id (what a reply quotes).
    pub id: String,
    /// The text; for a voice note, `(voice note) ` and the file it was saved to.
    pub body: String,
    /// A voice note, saved as a playable Ogg/Opus file.
    pub voice_note: Option<std::path::PathBuf>,
}

/// How a voice note shows among the replies: this, then the file's path.
pub const VOICE_NOTE_MARK: &str = "(voice note) ";

/// Why a message got no reply.
#[derive(Debug, Error)]
pub enum ChatError {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Stack(String),
    #[error("the webhook at {url} is not reachable ({source}); is `remedios up` running?")]
    WebhookDown { url: String, source: reqwest::Error },
    #[error("the webhook refused the message: {status} {body}")]
    WebhookRefused { status: u16, body: String },
    #[error("the Graph API emulator at {url} is not reachable: {detail}")]
    EmulatorDown { url: String, detail: String },
    #[error("no reply within {waited:?}. {}", diagnosis.join("; "))]
    NoReply {
        waited: Duration,
        stages: Stages,
        diagnosis: Vec<String>,
    },
}

/// A conversation with the local stack as one user.
pub struct Chat {
    info: StackInfo,
    user: meta::User,
    tag: UserTag,
    tags: TagKey,
    http: reqwest::Client,
    emulator: EmulatorClient,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    sent: u64,
    /// The Graph API emulator's last record this chat has handed over (a reply or
    /// [`Self::inbox`]).
    shown: u64,
}

impl Chat {
    /// A chat with the stack `info` describes, as `user`. It needs the Graph API
    /// emulator: with real WhatsApp credentials the replies go to real phones.
    pub async fn connect(info: StackInfo, user: meta::User) -> Result<Self, ChatError> {
        let Some(url) = info.graph_emulator_url.clone() else {
            return Err(ChatError::Stack(
                "the stack uses the real Graph API (WHATSAPP_ACCESS_TOKEN is set): talk to it \
                 from WhatsApp, or restart `remedios up` without the WhatsApp variables"
                    .into(),
            ));
        };
        let sdk = info.admin_sdk().await;
        let s3 = remedios_emulators::moto::s3_client(&sdk);
        let key = UserKey::new(
            user.user_id
                .clone()
                .or_else(|| user.wa_id.clone())
                .unwrap_or_default(),
        );
        let tags = TagKey::new(&info.user_tag_key).map_err(|e| ChatError::Stack(e.to_string()))?;
        let emulator = EmulatorClient::new(&url);
        // What was sent before this chat began is not its news.
        let shown = emulator
            .recorded(0)
            .await
            .map(|r| r.iter().map(Recorded::seq).max().unwrap_or(0))
            .unwrap_or(0);
        Ok(Chat {
            tag: key.tag(&tags),
            tags,
            user,
            http: reqwest::Client::new(),
            emulator,
            s3,
            sqs: aws_sdk_sqs::Client::new(&sdk),
            info,
            sent: 0,
            shown,
        })
    }

    /// The user's pseudonymous tag (their S3 keys).
    pub fn tag(&self) -> &UserTag {
        &self.tag
    }

    /// The keyed tag of one of this chat's message ids (its S3 keys).
    pub fn message_tag(&self, message_id: &str) -> MessageTag {
        self.tags.message(message_id)
    }

    /// Sends `outgoing` and waits up to `timeout` for the reply. `tick` is called about
    /// ten times a second with the stage being waited for (for a spinner).
    pub async fn send(
        &mut self,
        outgoing: Outgoing,
        timeout: Duration,
        mut tick: impl FnMut(&str),
    ) -> Result<Exchange, ChatError> {
        let since = self.last_seq().await?;
        let started = Instant::now();
        let (message_id, voice) = self.post(outgoing).await?;
        let mut stages = Stages {
            webhook: started.elapsed(),
            ..Stages::default()
        };
        let message_tag = self.message_tag(&message_id);
        let record_key = keys::message_record(&self.tag, &message_tag);
        let transcript_key = keys::transcript(&self.tag, &message_tag);
        let mut replies: Vec<(u64, String)> = Vec::new();
        let mut voice_notes = Vec::new();
        let mut last_reply_at: Option<Instant> = None;
        loop {
            let waiting_for = if stages.stored.is_none() {
                "inbound queue → transcriber"
            } else if voice && stages.transcribed.is_none() {
                "transcribing the voice note"
            } else {
                "reply queue → responder → model"
            };
            tick(waiting_for);
            if stages.stored.is_none() && self.exists(&record_key).await {
                stages.stored = Some(started.elapsed());
            }
            if voice && stages.transcribed.is_none() && self.exists(&transcript_key).await {
                stages.transcribed = Some(started.elapsed());
            }
            if let Ok(recorded) = self.emulator.recorded(since).await {
                let known: Vec<u64> = replies.iter().map(|(s, _)| *s).collect();
                let new = recorded
                    .into_iter()
                    .filter(|r| !known.contains(&r.seq()))
                    .collect();
                for (seq, incoming) in self.ours(new).await {
                    if replies.is_empty() {
                        stages.replied = started.elapsed();
                    }
                    voice_notes.extend(incoming.voice_note);
                    replies.push((seq, incoming.body));
                    last_reply_at = Some(Instant::now());
                }
            }
            // A long answer comes in several parts: collect them until a quiet second.
            if let Some(at) = last_reply_at
                && at.elapsed() > Duration::from_secs(1)
            {
                break;
            }
            if last_reply_at.is_none() && started.elapsed() > timeout {
                return Err(ChatError::NoReply {
                    waited: timeout,
                    diagnosis: self.diagnose(&stages, voice).await,
                    stages,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        replies.sort_by_key(|(seq, _)| *seq);
        self.shown = self.shown.max(replies.last().map_or(0, |(seq, _)| *seq));
        Ok(Exchange {
            message_id,
            message_tag,
            replies: replies.into_iter().map(|(_, body)| body).collect(),
            voice_notes,
            stages,
        })
    }

    /// Sends `outgoing` as a signed webhook and returns at once, with its WhatsApp id and
    /// whether it was a voice note: what the business sends back comes to
    /// [`Self::inbox`].
    pub async fn post(&mut self, outgoing: Outgoing) -> Result<(String, bool), ChatError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.sent += 1;
        let party = self.user.wa_id.as_ref().or(self.user.user_id.as_ref());
        let message_id = meta::wamid(
            party.map(String::as_str).unwrap_or_default(),
            now.as_nanos() * 10_000 + u128::from(self.sent),
        );
        let timestamp = now.as_secs() as i64;
        let (message, voice) = match outgoing {
            Outgoing::Text(text) => (meta::text(&self.user, &message_id, timestamp, &text), false),
            Outgoing::Quote { text, quoted } => (
                meta::quoting(
                    meta::text(&self.user, &message_id, timestamp, &text),
                    &quoted,
                ),
                false,
            ),
            Outgoing::Voice { bytes, mime_type } => {
                let media_id = self
                    .emulator
                    .add_media(bytes, &mime_type)
                    .await
                    .map_err(|e| ChatError::EmulatorDown {
                        url: self.info.graph_emulator_url.clone().unwrap_or_default(),
                        detail: e.to_string(),
                    })?;
                (
                    meta::audio(
                        &self.user,
                        &message_id,
                        timestamp,
                        &media_id,
                        &mime_type,
                        true,
                    ),
                    true,
                )
            }
        };
        let body = meta::single(&self.user, message);
        post_notification(&self.http, &self.info, body).await?;
        Ok((message_id, voice))
    }

    /// What the business sent this chat's party since the last reply or inbox read, in
    /// order: staff relays, notifications, a notice that nobody answered.
    pub async fn inbox(&mut self) -> Result<Vec<Incoming>, ChatError> {
        let recorded =
            self.emulator
                .recorded(self.shown)
                .await
                .map_err(|e| ChatError::EmulatorDown {
                    url: self.info.graph_emulator_url.clone().unwrap_or_default(),
                    detail: e.to_string(),
                })?;
        let mut ours = self.ours(recorded).await;
        ours.sort_by_key(|(seq, _)| *seq);
        if let Some((seq, _)) = ours.last() {
            self.shown = self.shown.max(*seq);
        }
        Ok(ours.into_iter().map(|(_, incoming)| incoming).collect())
    }

    /// Whether a person has this chat's conversation now (its hand-over is in force):
    /// the assistant then stays quiet, and waiting for its reply is pointless.
    pub async fn handed_over(&self) -> bool {
        let Ok(object) = self
            .s3
            .get_object()
            .bucket(&self.info.bucket)
            .key(keys::conversation(&self.tag))
            .send()
            .await
        else {
            return false;
        };
        let Ok(bytes) = object.body.collect().await else {
            return false;
        };
        let conversation: serde_json::Value =
            serde_json::from_slice(&bytes.into_bytes()).unwrap_or_default();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        conversation["handoff"]["until_ms"]
            .as_i64()
            .is_some_and(|until| until > now_ms)
    }

    /// The texts and voice notes among `recorded` that the business sent this chat's
    /// party, with their sequence numbers; each voice note saved to a file beside the
    /// stack's logs, to play.
    async fn ours(&self, recorded: Vec<Recorded>) -> Vec<(u64, Incoming)> {
        let mut ours = Vec::new();
        for r in recorded {
            match r {
                Recorded::Text {
                    seq,
                    to,
                    recipient,
                    body,
                    id: Some(id),
                    ..
                } if self.is_us(to.as_deref(), recipient.as_deref()) => ours.push((
                    seq,
                    Incoming {
                        id,
                        body,
                        voice_note: None,
                    },
                )),
                Recorded::Audio {
                    seq,
                    to,
                    recipient,
                    media_id,
                    id: Some(id),
                    ..
                } if self.is_us(to.as_deref(), recipient.as_deref()) => {
                    let (body, voice_note) = match self.save_voice_note(&media_id).await {
                        Ok(path) => (format!("{VOICE_NOTE_MARK}{}", path.display()), Some(path)),
                        Err(e) => (format!("{VOICE_NOTE_MARK}(could not be saved: {e})"), None),
                    };
                    ours.push((
                        seq,
                        Incoming {
                            id,
                            body,
                            voice_note,
                        },
                    ));
                }
                _ => {}
            }
        }
        ours
    }

    /// Saves the uploaded voice note `media_id` as `voice-replies/<id>.ogg` beside the
    /// stack's log directory.
    async fn save_voice_note(&self, media_id: &str) -> Result<std::path::PathBuf, String> {
        let bytes = self
            .emulator
            .uploaded(media_id)
            .await
            .map_err(|e| e.to_string())?;
        let dir = self
            .info
            .log_dir
            .parent()
            .unwrap_or(&self.info.log_dir)
            .join("voice-replies");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = dir.join(format!("{media_id}.ogg"));
        std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
        Ok(path)
    }

    fn is_us(&self, to: Option<&str>, recipient: Option<&str>) -> bool {
        let number = |n: &str| n.trim_start_matches('+').to_owned();
        match (to, &self.user.wa_id, recipient, &self.user.user_id) {
            (Some(t), Some(w), _, _) if number(t) == number(w) => true,
            (_, _, Some(r), Some(u)) if r == u => true,
            _ => false,
        }
    }

    async fn last_seq(&self) -> Result<u64, ChatError> {
        let recorded = self
            .emulator
            .recorded(0)
            .await
            .map_err(|e| ChatError::EmulatorDown {
                url: self.info.graph_emulator_url.clone().unwrap_or_default(),
                detail: e.to_string(),
            })?;
        Ok(recorded.iter().map(Recorded::seq).max().unwrap_or(0))
    }

    async fn exists(&self, key: &str) -> bool {
        self.s3
            .head_object()
            .bucket(&self.info.bucket)
            .key(key)
            .send()
            .await
            .is_ok()
    }

    /// Says which part is down or where the message is stuck.
    pub async fn diagnose(&self, stages: &Stages, voice: bool) -> Vec<String> {
        let mut found = Vec::new();
        let http = &self.http;
        let up = |url: String| async move {
            http.get(url)
                .timeout(Duration::from_secs(3))
                .send()
                .await
                .is_ok()
        };
        if !up(format!("{}/moto-api/", self.info.moto_url)).await {
            found.push(format!(
                "the AWS emulator (moto) at {} is down",
                self.info.moto_url
            ));
            return found;
        }
        if !self.emulator.healthy().await {
            found.push(format!(
                "the Graph API emulator at {} is down",
                self.info.graph_emulator_url.clone().unwrap_or_default()
            ));
        }
        if !up(format!(
            "{}/models",
            self.info.model_url.trim_end_matches('/')
        ))
        .await
        {
            found.push(format!(
                "the GPT4All host at {} does not answer",
                self.info.model_url
            ));
        }
        if !up(self.info.functions_url.clone()).await {
            found.push(format!(
                "the functions (cargo lambda watch) at {} are down",
                self.info.functions_url
            ));
        }
        for (queue, name) in [(&self.info.inbound, "inbound"), (&self.info.reply, "reply")] {
            if let Some(n) = self.queued(&queue.dlq_url).await
                && n > 0
            {
                found.push(format!(
                    "{n} message(s) in the {name} dead-letter queue: the {} gave up (see its log)",
                    if name == "inbound" {
                        "transcriber"
                    } else {
                        "responder"
                    }
                ));
            }
        }
        for (queue, name) in [
            (&self.info.inbound, "transcriber"),
            (&self.info.reply, "responder"),
        ] {
            if let Some((in_flight, visibility)) = self.in_flight(&queue.url).await
                && in_flight > 0
            {
                found.push(format!(
                    "{in_flight} message(s) taken by the {name} and not finished: being handled, or \
                     failed and waiting for a retry, which SQS gives within {visibility} s (the \
                     reply may still come; `remedios stats` shows retries by cause)"
                ));
            }
        }
        let stuck = if stages.stored.is_none() {
            "the transcriber never stored the message: it is down, failing, or still busy"
        } else if voice && stages.transcribed.is_none() {
            "the transcriber stored the voice note but has not transcribed it"
        } else {
            "the responder has not replied: it is down, failing, or the model is slow"
        };
        found.push(format!(
            "{stuck} (logs: {})",
            self.info.log_dir.join("functions.log").display()
        ));
        found
    }

    /// Messages received but not deleted yet, and the queue's visibility timeout in seconds.
    async fn in_flight(&self, url: &str) -> Option<(u64, u64)> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::VisibilityTimeout)
            .send()
            .await
            .ok()?;
        let attributes = out.attributes()?;
        let get = |name: &A| attributes.get(name)?.parse().ok();
        Some((
            get(&A::ApproximateNumberOfMessagesNotVisible)?,
            get(&A::VisibilityTimeout)?,
        ))
    }

    async fn queued(&self, url: &str) -> Option<u64> {
        use aws_sdk_sqs::types::QueueAttributeName;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .ok()?;
        out.attributes()?
            .get(&QueueAttributeName::ApproximateNumberOfMessages)?
            .parse()
            .ok()
    }
}

/// A terminal spinner frame for `n`.
pub fn spinner(n: usize) -> char {
    const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    FRAMES[n % FRAMES.len()]
}
