//! A local emulator of the WhatsApp Cloud API endpoints Remedios calls, following
//! Meta's documented requests, responses and error bodies:
//!
//! - `GET /{version}/{media-id}` → `{messaging_product, url, mime_type, sha256, file_size, id}`;
//!   an unknown id answers 400 with error code 100, as the Graph API does.
//! - `GET {url}` (the media download) with the bearer token → the bytes.
//! - `POST /{version}/{phone-number-id}/messages`: text messages (`to` or `recipient`,
//!   `context.message_id`, at most 4096 characters) → `{messaging_product, contacts,
//!   messages: [{id}]}`; template messages (`template.name`, `template.language.code`) of
//!   the templates approved on the emulator, else 132001, and not held to the 24-hour
//!   window (a scripted 131047 applies to free-form messages only); read receipts with or
//!   without the typing indicator → `{"success": true}`.
//! - `POST /{version}/{phone-number-id}/media` (multipart: `messaging_product`, `type`,
//!   `file`) → `{id}` for audio files up to 16 MB; audio messages of such media, and
//!   as voice messages (`audio.voice: true`) only mono Ogg/Opus up to 512 KB (131053
//!   otherwise, so a test notices what WhatsApp would show as a plain file).
//! - A wrong or missing token answers 401 with code 190.
//!
//! It records every request so tests can assert on them, and can be told to fail
//! ([`Fault`]): rate limits (429/130429, 131056), server errors, 131047, for a number of
//! calls or for a while. Control endpoints under `/_emulator/` let another process
//! (the chat, the local stack) upload media and read what was sent.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Which endpoint a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// Text sends.
    Send,
    /// Read receipts and typing indicators.
    Read,
    /// Media lookups.
    MediaLookup,
    /// Media downloads.
    MediaDownload,
}

/// An error the emulator answers with, as Meta shapes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSpec {
    pub status: u16,
    pub code: i64,
    pub message: String,
    #[serde(default)]
    pub details: Option<String>,
    /// Send a `Retry-After` header.
    #[serde(default)]
    pub retry_after_seconds: Option<u64>,
}

impl ErrorSpec {
    /// Throughput limit: HTTP 429, code 130429.
    pub fn throughput() -> Self {
        Self::new(429, 130_429, "(#130429) Rate limit hit")
            .details("Cloud API message throughput has been reached.")
    }
    /// Pair rate limit: code 131056.
    pub fn pair_rate() -> Self {
        Self::new(400, 131_056, "(#131056) (Business Account, Consumer Account) pair rate limit hit")
            .details("Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.")
    }
    /// Outside the 24-hour window: code 131047.
    pub fn reengagement() -> Self {
        Self::new(400, 131_047, "(#131047) Re-engagement message")
            .details("Message failed to send because more than 24 hours have passed since the customer last replied to this number.")
    }
    /// A server error: HTTP 500, code 131000.
    pub fn server_error() -> Self {
        Self::new(500, 131_000, "(#131000) Something went wrong")
    }
    /// An expired token: HTTP 401, code 190.
    pub fn expired_token() -> Self {
        Self::new(
            401,
            190,
            "Error validating access token: Session has expired.",
        )
    }
    /// Test mode: recipient not in the allowed list (131030).
    pub fn not_allowed() -> Self {
        Self::new(
            400,
            131_030,
            "(#131030) Recipient phone number not in allowed list",
        )
        .details("Add recipient phone number to recipient list and try again.")
    }

    pub fn new(status: u16, code: i64, message: &str) -> Self {
        ErrorSpec {
            status,
            code,
            message: message.to_owned(),
            details: None,
            retry_after_seconds: None,
        }
    }

    pub fn details(mut self, details: &str) -> Self {
        self.details = Some(details.to_owned());
        self
    }

    fn response(&self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut error = json!({
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
            "fbtrace_id": "AemulatorTrace",
        });
        if let Some(details) = &self.details {
            error["error_data"] = json!({ "messaging_product": "whatsapp", "details": details });
        }
        let mut response = (status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after_seconds
            && let Ok(v) = header::HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

/// A scripted failure: the next `count` calls, or all calls for `seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub endpoint: Endpoint,
    pub error: ErrorSpec,
    /// Fail this many calls (then stop).
    #[serde(default)]
    pub count: Option<u32>,
    /// Fail every call for this long.
    #[serde(default)]
    pub seconds: Option<f64>,
    /// Only for sends to this recipient (`to` or `recipient`).
    #[serde(default)]
    pub recipient: Option<String>,
}

impl Fault {
    /// Fails the next `count` calls to `endpoint`.
    pub fn times(endpoint: Endpoint, count: u32, error: ErrorSpec) -> Self {
        Fault {
            endpoint,
            error,
            count: Some(count),
            seconds: None,
            recipient: None,
        }
    }

    /// Fails every call to `endpoint` for `duration`.
    pub fn during(endpoint: Endpoint, duration: Duration, error: ErrorSpec) -> Self {
        Fault {
            endpoint,
            error,
            count: None,
            seconds: Some(duration.as_secs_f64()),
            recipient: None,
        }
    }

    /// Restricts a send fault to one recipient.
    pub fn for_recipient(mut self, recipient: &str) -> Self {
        self.recipient = Some(recipient.to_owned());
        self
    }
}

/// A media object the emulator serves.
#[derive(Debug, Clone, Default)]
pub struct MediaSpec {
    pub bytes: Vec<u8>,
    pub mime_type: String,
    /// Announce this SHA-256 (hex) instead of the real one.
    pub sha256_override: Option<String>,
    /// Announce this size instead of the real one.
    pub file_size_override: Option<u64>,
    /// Answer lookups with this URL instead of the emulator's own.
    pub url_override: Option<String>,
}

/// One request the emulator received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recorded {
    /// A text message; `answered` is false when the emulator answered with an error.
    Text {
        seq: u64,
        at_ms: u64,
        phone_number_id: String,
        to: Option<String>,
        recipient: Option<String>,
        body: String,
        reply_to: Option<String>,
        /// The id we answered with (`None` when we answered an error).
        id: Option<String>,
    },
    /// A template message.
    Template {
        seq: u64,
        at_ms: u64,
        phone_number_id: String,
        to: Option<String>,
        recipient: Option<String>,
        name: String,
        language: String,
        /// The id we answered with (`None` when we answered an error).
        id: Option<String>,
    },
    /// A read receipt, with or without the typing indicator.
    Read {
        seq: u64,
        at_ms: u64,
        phone_number_id: String,
        message_id: String,
        typing: bool,
        answered: bool,
    },
    /// A media lookup.
    MediaLookup {
        seq: u64,
        at_ms: u64,
        media_id: String,
        answered: bool,
    },
    /// A media download.
    MediaDownload {
        seq: u64,
        at_ms: u64,
        media_id: String,
        answered: bool,
    },
    /// A file uploaded to the business number's media (`POST /{phone-number-id}/media`).
    MediaUpload {
        seq: u64,
        at_ms: u64,
        phone_number_id: String,
        mime_type: String,
        bytes: usize,
        /// The media id answered (`None` when refused).
        media_id: Option<String>,
    },
    /// An audio message; `voice` when sent as a voice message (`audio.voice: true`).
    Audio {
        seq: u64,
        at_ms: u64,
        phone_number_id: String,
        to: Option<String>,
        recipient: Option<String>,
        media_id: String,
        voice: bool,
        /// The id we answered with (`None` when we answered an error).
        id: Option<String>,
    },
    /// An app subscribed to a WhatsApp Business Account's webhooks
    /// (`POST /{waba-id}/subscribed_apps`).
    Subscribed {
        seq: u64,
        at_ms: u64,
        waba_id: String,
    },
    /// A request the emulator refused as invalid (what Meta would answer 400/401 to).
    Refused {
        seq: u64,
        at_ms: u64,
        path: String,
        code: i64,
        reason: String,
    },
}

impl Recorded {
    pub fn seq(&self) -> u64 {
        match self {
            Recorded::Text { seq, .. }
            | Recorded::Template { seq, .. }
            | Recorded::Read { seq, .. }
            | Recorded::MediaLookup { seq, .. }
            | Recorded::MediaDownload { seq, .. }
            | Recorded::MediaUpload { seq, .. }
            | Recorded::Audio { seq, .. }
            | Recorded::Subscribed { seq, .. }
            | Recorded::Refused { seq, .. } => *seq,
        }
    }
}

/// A text that was accepted, as tests look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentText {
    pub phone_number_id: String,
    pub to: Option<String>,
    pub recipient: Option<String>,
    pub body: String,
    pub reply_to: Option<String>,
    pub id: String,
    pub seq: u64,
}

#[derive(Debug)]
struct ActiveFault {
    fault: Fault,
    remaining: Option<u32>,
    until: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    token: String,
    base_url: String,
    media: HashMap<String, MediaSpec>,
    next_media: u64,
    /// What the business uploaded to send: media id → (MIME type, bytes).
    uploads: HashMap<String, (String, Vec<u8>)>,
    seq: u64,
    recorded: Vec<Recorded>,
    faults: Vec<ActiveFault>,
    allowed_recipients: Option<HashSet<String>>,
    /// WhatsApp Business Accounts the app was subscribed to.
    subscribed: Vec<String>,
    /// Approved message templates: (name, language code).
    templates: HashSet<(String, String)>,
    /// Text sends still to hold ([`GraphEmulator::stall_sends`]), and for how long.
    stalled_sends: u32,
    stall: Duration,
}

impl Inner {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// What Meta answers a free-form message (a text, an audio message) to `to` or
    /// `recipient`: the id it sends it under, or the error of a scripted fault or of a
    /// number outside the test-mode allowed list.
    fn free_form_send(
        &mut self,
        seq: u64,
        to: &Option<String>,
        recipient: &Option<String>,
    ) -> (Option<String>, Option<ErrorSpec>) {
        let target = to.clone().or_else(|| recipient.clone());
        let mut error = self.take_fault(Endpoint::Send, target.as_deref());
        if error.is_none()
            && let (Some(allowed), Some(number)) = (&self.allowed_recipients, to)
            && !allowed.contains(number.trim_start_matches('+'))
        {
            error = Some(ErrorSpec::not_allowed());
        }
        let id = error.is_none().then(|| sent_id(target.as_deref(), seq));
        (id, error)
    }

    /// Records request `seq` to `path` as refused, and answers it as Meta does: 400 with
    /// error `code`.
    fn refuse(&mut self, seq: u64, path: &str, code: i64, reason: &str) -> Response {
        self.recorded.push(Recorded::Refused {
            seq,
            at_ms: now_ms(),
            path: path.to_owned(),
            code,
            reason: reason.to_owned(),
        });
        ErrorSpec::new(400, code, &format!("(#{code}) {reason}")).response()
    }

    /// The error to answer a call to `endpoint` with, if a fault applies.
    fn take_fault(&mut self, endpoint: Endpoint, recipient: Option<&str>) -> Option<ErrorSpec> {
        self.take_fault_where(endpoint, recipient, |_| true)
    }

    /// The first scripted fault for `endpoint` and `recipient` that `applies` to this call.
    fn take_fault_where(
        &mut self,
        endpoint: Endpoint,
        recipient: Option<&str>,
        applies: impl Fn(&ErrorSpec) -> bool,
    ) -> Option<ErrorSpec> {
        let now = Instant::now();
        self.faults
            .retain(|f| f.until.is_none_or(|u| u > now) && f.remaining.is_none_or(|r| r > 0));
        let fault = self.faults.iter_mut().find(|f| {
            f.fault.endpoint == endpoint
                && f.fault
                    .recipient
                    .as_deref()
                    .is_none_or(|r| Some(r) == recipient)
                && applies(&f.fault.error)
        })?;
        if let Some(r) = fault.remaining.as_mut() {
            *r -= 1;
        }
        Some(fault.fault.error.clone())
    }
}

type Shared = Arc<Mutex<Inner>>;

fn lock(state: &Shared) -> MutexGuard<'_, Inner> {
    // A panicking handler cannot leave the state half-written in a way that matters
    // to the tests; keep serving.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running emulator; stops when dropped.
#[derive(Debug)]
pub struct GraphEmulator {
    addr: SocketAddr,
    state: Shared,
    task: JoinHandle<()>,
}

impl Drop for GraphEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GraphEmulator {
    /// Starts on a free loopback port, accepting `token` as the bearer token.
    pub async fn start(token: &str) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().map_err(std::io::Error::other)?, token).await
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr, token: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state: Shared = Arc::new(Mutex::new(Inner {
            token: token.to_owned(),
            base_url: format!("http://{addr}"),
            ..Inner::default()
        }));
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(GraphEmulator { addr, state, task })
    }

    /// `http://127.0.0.1:<port>`: the Graph API base URL to configure.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `bytes` as a media object; returns its id.
    pub fn add_media(&self, bytes: impl Into<Vec<u8>>, mime_type: &str) -> String {
        self.add_media_spec(MediaSpec {
            bytes: bytes.into(),
            mime_type: mime_type.to_owned(),
            ..MediaSpec::default()
        })
    }

    /// Serves a media object with overrides; returns its id.
    pub fn add_media_spec(&self, spec: MediaSpec) -> String {
        add_media(&self.state, spec)
    }

    /// Everything received so far, in order.
    pub fn recorded(&self) -> Vec<Recorded> {
        lock(&self.state).recorded.clone()
    }

    /// The voice messages accepted so far, in order: (recipient, the Ogg/Opus bytes).
    pub fn sent_voice_notes(&self) -> Vec<(String, Vec<u8>)> {
        let inner = lock(&self.state);
        inner
            .recorded
            .iter()
            .filter_map(|r| match r {
                Recorded::Audio {
                    to,
                    recipient,
                    media_id,
                    voice: true,
                    id: Some(_),
                    ..
                } => {
                    let (_, bytes) = inner.uploads.get(media_id)?;
                    Some((to.clone().or(recipient.clone())?, bytes.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// The texts accepted so far, in order.
    pub fn sent_texts(&self) -> Vec<SentText> {
        sent_texts(&self.recorded())
    }

    /// Approves the message template `name` in `language` (a code such as `en_US`).
    pub fn approve_template(&self, name: &str, language: &str) {
        lock(&self.state)
            .templates
            .insert((name.to_owned(), language.to_owned()));
    }

    /// The templates accepted so far, in order: (recipient, name, language).
    pub fn sent_templates(&self) -> Vec<(String, String, String)> {
        self.recorded()
            .into_iter()
            .filter_map(|r| match r {
                Recorded::Template {
                    to,
                    recipient,
                    name,
                    language,
                    id: Some(_),
                    ..
                } => Some((to.or(recipient).unwrap_or_default(), name, language)),
                _ => None,
            })
            .collect()
    }

    /// Scripts a failure.
    pub fn inject(&self, fault: Fault) {
        inject(&self.state, fault);
    }

    /// Holds the next `count` text sends for `stall` each, then answers them 504 without
    /// sending: a Graph API so slow that a client's timeout ends the request first.
    pub fn stall_sends(&self, count: u32, stall: Duration) {
        let mut inner = lock(&self.state);
        inner.stalled_sends = count;
        inner.stall = stall;
    }

    /// Clears all scripted failures.
    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// Emulates a test number's allowed list: sends to other `to` numbers fail
    /// with 131030. `None` allows everyone.
    pub fn set_allowed_recipients(&self, numbers: Option<&[&str]>) {
        lock(&self.state).allowed_recipients = numbers.map(|n| {
            n.iter()
                .map(|s| s.trim_start_matches('+').to_owned())
                .collect()
        });
    }
}

/// The accepted texts among `recorded`.
pub fn sent_texts(recorded: &[Recorded]) -> Vec<SentText> {
    recorded
        .iter()
        .filter_map(|r| match r {
            Recorded::Text {
                seq,
                phone_number_id,
                to,
                recipient,
                body,
                reply_to,
                id: Some(id),
                ..
            } => Some(SentText {
                phone_number_id: phone_number_id.clone(),
                to: to.clone(),
                recipient: recipient.clone(),
                body: body.clone(),
                reply_to: reply_to.clone(),
                id: id.clone(),
                seq: *seq,
            }),
            _ => None,
        })
        .collect()
}

fn add_media(state: &Shared, spec: MediaSpec) -> String {
    let mut inner = lock(state);
    inner.next_media += 1;
    let id = format!("{}", 900_000_000_000_000u64 + inner.next_media);
    inner.media.insert(id.clone(), spec);
    id
}

fn inject(state: &Shared, fault: Fault) {
    let until = fault
        .seconds
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map(|d| Instant::now() + d);
    lock(state).faults.push(ActiveFault {
        remaining: fault.count,
        until,
        fault,
    });
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/_emulator/recorded", get(control_recorded))
        .route("/_emulator/media", post(control_add_media))
        .route(
            "/_emulator/faults",
            post(control_fault).delete(control_clear_faults),
        )
        .route("/_emulator/health", get(|| async { "ok" }))
        .route("/_media/{id}", get(download))
        .route("/{version}/{id}", get(media_lookup))
        .route("/{version}/{node}/messages", post(messages))
        .route("/{version}/{node}/media", post(upload_media))
        .route("/_emulator/uploads/{id}", get(control_upload))
        .route(
            "/{version}/{node}/subscribed_apps",
            post(subscribe_app).get(subscribed_apps),
        )
        .with_state(state)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Checks the bearer token: `Some` is the refusal Meta gives for a bad one.
fn refuse_token(inner: &Inner, headers: &HeaderMap) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(inner.token.as_str()) {
        None
    } else {
        Some(
            ErrorSpec::new(
                401,
                190,
                "Invalid OAuth access token - Cannot parse access token",
            )
            .response(),
        )
    }
}

async fn media_lookup(
    State(state): State<Shared>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut inner = lock(&state);
    let seq = inner.next_seq();
    if let Some(r) = refuse_token(&inner, &headers) {
        inner.recorded.push(Recorded::Refused {
            seq,
            at_ms: now_ms(),
            path: format!("/{id}"),
            code: 190,
            reason: "bad token".into(),
        });
        return r;
    }
    let fault = inner.take_fault(Endpoint::MediaLookup, None);
    let found = inner.media.get(&id).cloned();
    let answered = fault.is_none() && found.is_some();
    inner.recorded.push(Recorded::MediaLookup {
        seq,
        at_ms: now_ms(),
        media_id: id.clone(),
        answered,
    });
    if let Some(error) = fault {
        return error.response();
    }
    let Some(media) = found else {
        return ErrorSpec::new(
            400,
            100,
            &format!("Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."),
        )
        .response();
    };
    let sha256 = media
        .sha256_override
        .clone()
        .unwrap_or_else(|| hex::encode(Sha256::digest(&media.bytes)));
    let url = media
        .url_override
        .clone()
        .unwrap_or_else(|| format!("{}/_media/{id}?ext=1&hash=emulator", inner.base_url));
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "url": url,
        "mime_type": media.mime_type,
        "sha256": sha256,
        "file_size": media.file_size_override.unwrap_or(media.bytes.len() as u64).to_string(),
        "id": id,
    }))
    .into_response()
}

async fn download(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut inner = lock(&state);
    let seq = inner.next_seq();
    if refuse_token(&inner, &headers).is_some() {
        // Meta answers media downloads without a valid token with 401/404 and no JSON.
        inner.recorded.push(Recorded::Refused {
            seq,
            at_ms: now_ms(),
            path: format!("/_media/{id}"),
            code: 0,
            reason: "bad token".into(),
        });
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let fault = inner.take_fault(Endpoint::MediaDownload, None);
    let found = inner.media.get(&id).cloned();
    inner.recorded.push(Recorded::MediaDownload {
        seq,
        at_ms: now_ms(),
        media_id: id,
        answered: fault.is_none() && found.is_some(),
    });
    if let Some(error) = fault {
        return error.response();
    }
    match found {
        Some(media) => ([(header::CONTENT_TYPE, media.mime_type)], media.bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Subscribes the token's app to a WhatsApp Business Account's webhooks, as Meta answers
/// it: `{"success": true}`; an id that is not a number names no object (code 100,
/// subcode 33), and a bad token is refused (190).
async fn subscribe_app(
    State(state): State<Shared>,
    Path((_version, waba_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut inner = lock(&state);
    let seq = inner.next_seq();
    let path = format!("/{waba_id}/subscribed_apps");
    if let Some(r) = refuse_token(&inner, &headers) {
        inner.recorded.push(Recorded::Refused {
            seq,
            at_ms: now_ms(),
            path,
            code: 190,
            reason: "bad token".into(),
        });
        return r;
    }
    if waba_id.is_empty() || !waba_id.bytes().all(|b| b.is_ascii_digit()) {
        let reason = format!(
            "Unsupported post request. Object with ID '{waba_id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
        );
        inner.recorded.push(Recorded::Refused {
            seq,
            at_ms: now_ms(),
            path,
            code: 100,
            reason: reason.clone(),
        });
        return ErrorSpec::new(400, 100, &reason).response();
    }
    if !inner.subscribed.contains(&waba_id) {
        inner.subscribed.push(waba_id.clone());
    }
    inner.recorded.push(Recorded::Subscribed {
        seq,
        at_ms: now_ms(),
        waba_id,
    });
    (StatusCode::OK, axum::Json(json!({ "success": true }))).into_response()
}

/// The apps subscribed to a WhatsApp Business Account: the emulator's one app, once
/// subscribed.
async fn subscribed_apps(
    State(state): State<Shared>,
    Path((_version, waba_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let inner = lock(&state);
    if let Some(r) = refuse_token(&inner, &headers) {
        return r;
    }
    let data: Vec<Value> = if inner.subscribed.contains(&waba_id) {
        vec![json!({ "whatsapp_business_api_data": { "id": EMULATOR_APP_ID, "name": "Remedios" } })]
    } else {
        Vec::new()
    };
    (StatusCode::OK, axum::Json(json!({ "data": data }))).into_response()
}

/// The id of the app the emulator's token belongs to.
pub const EMULATOR_APP_ID: &str = "1234567890123456";

async fn messages(
    State(state): State<Shared>,
    Path((_version, phone)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let stall = {
        let mut inner = lock(&state);
        let text = serde_json::from_slice::<Value>(&body).is_ok_and(|b| b["type"] == "text");
        (text && inner.stalled_sends > 0).then(|| {
            inner.stalled_sends -= 1;
            inner.stall
        })
    };
    if let Some(stall) = stall {
        tokio::time::sleep(stall).await;
        return ErrorSpec::new(504, 2, "Service temporarily unavailable (stalled)").response();
    }
    let mut inner = lock(&state);
    let seq = inner.next_seq();
    let refuse = |inner: &mut Inner, code: i64, reason: String| {
        inner.refuse(seq, &format!("/{phone}/messages"), code, &reason)
    };
    if let Some(r) = refuse_token(&inner, &headers) {
        inner.recorded.push(Recorded::Refused {
            seq,
            at_ms: now_ms(),
            path: format!("/{phone}/messages"),
            code: 190,
            reason: "bad token".into(),
        });
        return r;
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return refuse(
                &mut inner,
                100,
                format!("Invalid parameter: body is not JSON: {e}"),
            );
        }
    };
    if request["messaging_product"] != "whatsapp" {
        return refuse(
            &mut inner,
            100,
            "Invalid parameter: messaging_product must be \"whatsapp\"".into(),
        );
    }
    if request.get("status").is_some() {
        return read_receipt(&mut inner, seq, &phone, &request);
    }
    let to = request["to"].as_str().map(str::to_owned);
    let recipient = request["recipient"].as_str().map(str::to_owned);
    if to.is_none() && recipient.is_none() {
        return refuse(
            &mut inner,
            131_008,
            "Required parameter is missing: to".into(),
        );
    }
    if let Some(number) = &to
        && !number
            .trim_start_matches('+')
            .chars()
            .all(|c| c.is_ascii_digit())
    {
        return refuse(
            &mut inner,
            100,
            format!("Invalid parameter: `to` is not a phone number: {number}"),
        );
    }
    if request["type"] == "template" {
        return template_message(&mut inner, seq, phone, to, recipient, &request);
    }
    if request["type"] == "audio" {
        return audio_message(&mut inner, seq, phone, to, recipient, &request);
    }
    if request["type"] != "text" {
        return refuse(
            &mut inner,
            131_009,
            "Parameter value is not valid: only text, audio and template messages are emulated"
                .into(),
        );
    }
    let Some(text) = request["text"]["body"].as_str() else {
        return refuse(
            &mut inner,
            131_008,
            "Required parameter is missing: text.body".into(),
        );
    };
    if text.trim().is_empty() {
        return refuse(
            &mut inner,
            100,
            "Invalid parameter: text.body is empty".into(),
        );
    }
    if text.chars().count() > 4096 {
        return refuse(
            &mut inner,
            100,
            "Invalid parameter: text.body is longer than 4096 characters".into(),
        );
    }
    let reply_to = request["context"]["message_id"].as_str().map(str::to_owned);
    let (id, error) = inner.free_form_send(seq, &to, &recipient);
    inner.recorded.push(Recorded::Text {
        seq,
        at_ms: now_ms(),
        phone_number_id: phone,
        to: to.clone(),
        recipient: recipient.clone(),
        body: text.to_owned(),
        reply_to,
        id: id.clone(),
    });
    if let Some(error) = error {
        return error.response();
    }
    accepted(&to, &recipient, json!({ "id": id }))
}

/// A template message: an approved template, in a language it was approved in; Meta
/// delivers templates outside the 24-hour window, so a scripted 131047 does not apply.
fn template_message(
    inner: &mut Inner,
    seq: u64,
    phone: String,
    to: Option<String>,
    recipient: Option<String>,
    request: &Value,
) -> Response {
    let path = format!("/{phone}/messages");
    let (Some(name), Some(language)) = (
        request["template"]["name"].as_str(),
        request["template"]["language"]["code"].as_str(),
    ) else {
        let reason = "Required parameter is missing: template.name and template.language.code";
        inner.recorded.push(Recorded::Refused {
            seq,
            at_ms: now_ms(),
            path,
            code: 131_008,
            reason: reason.into(),
        });
        return ErrorSpec::new(400, 131_008, &format!("(#131008) {reason}")).response();
    };
    let target = to.clone().or_else(|| recipient.clone());
    let mut error = inner.take_fault_where(Endpoint::Send, target.as_deref(), |e| {
        e.code != ErrorSpec::reengagement().code
    });
    if error.is_none()
        && !inner
            .templates
            .contains(&(name.to_owned(), language.to_owned()))
    {
        error = Some(
            ErrorSpec::new(
                404,
                132_001,
                "(#132001) Template name does not exist in the translation",
            )
            .details(&format!(
                "template name ({name}) does not exist in {language}"
            )),
        );
    }
    let id = error.is_none().then(|| sent_id(target.as_deref(), seq));
    inner.recorded.push(Recorded::Template {
        seq,
        at_ms: now_ms(),
        phone_number_id: phone,
        to: to.clone(),
        recipient: recipient.clone(),
        name: name.to_owned(),
        language: language.to_owned(),
        id: id.clone(),
    });
    if let Some(error) = error {
        return error.response();
    }
    accepted(
        &to,
        &recipient,
        json!({ "id": id, "message_status": "accepted" }),
    )
}

/// The most a voice message may weigh for WhatsApp to show it as a voice note (a bigger
/// one shows as a file to download).
pub const VOICE_NOTE_MAX_BYTES: usize = 512 * 1024;
/// The most an uploaded audio file may weigh.
pub const AUDIO_MAX_BYTES: usize = 16 * 1024 * 1024;
/// The audio types the Cloud API takes.
const AUDIO_TYPES: [&str; 5] = [
    "audio/aac",
    "audio/amr",
    "audio/mpeg",
    "audio/mp4",
    "audio/ogg",
];

/// Whether `bytes` is an Ogg stream whose first packet is a mono Opus head: what WhatsApp
/// takes for a voice message.
pub fn is_mono_ogg_opus(bytes: &[u8]) -> bool {
    let mut reader = ogg::reading::PacketReader::new(std::io::Cursor::new(bytes));
    match reader.read_packet() {
        Ok(Some(head)) => head.data.starts_with(b"OpusHead") && head.data.get(9) == Some(&1),
        _ => false,
    }
}

/// `POST /{phone-number-id}/media`: a multipart form with `messaging_product`, `type` and
/// `file`, as Meta documents it → `{"id": media id}`.
async fn upload_media(
    State(state): State<Shared>,
    Path((_version, phone)): Path<(String, String)>,
    headers: HeaderMap,
    mut form: axum::extract::Multipart,
) -> Response {
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut file: Option<(Option<String>, Vec<u8>)> = None;
    let mut problem: Option<String> = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_owned();
                let content_type = field.content_type().map(str::to_owned);
                match field.bytes().await {
                    Ok(bytes) if name == "file" => file = Some((content_type, bytes.to_vec())),
                    Ok(bytes) => {
                        fields.insert(name, String::from_utf8_lossy(&bytes).into_owned());
                    }
                    Err(e) => problem = Some(format!("unreadable form field {name}: {e}")),
                }
            }
            Ok(None) => break,
            Err(e) => {
                problem = Some(format!("not a multipart form: {e}"));
                break;
            }
        }
    }
    let mut inner = lock(&state);
    let seq = inner.next_seq();
    let path = format!("/{phone}/media");
    let refuse =
        |inner: &mut Inner, code: i64, reason: String| inner.refuse(seq, &path, code, &reason);
    if let Some(r) = refuse_token(&inner, &headers) {
        return r;
    }
    if let Some(problem) = problem {
        return refuse(&mut inner, 100, format!("Invalid parameter: {problem}"));
    }
    if fields.get("messaging_product").map(String::as_str) != Some("whatsapp") {
        return refuse(
            &mut inner,
            100,
            "Invalid parameter: messaging_product must be \"whatsapp\"".into(),
        );
    }
    let Some((part_type, bytes)) = file else {
        return refuse(
            &mut inner,
            100,
            "Required parameter is missing: file".into(),
        );
    };
    let mime_type = fields
        .get("type")
        .cloned()
        .or(part_type)
        .unwrap_or_default();
    let essence = mime_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if !AUDIO_TYPES.contains(&essence.as_str()) {
        return refuse(
            &mut inner,
            131_053,
            format!("Media upload error: unsupported type {mime_type:?}"),
        );
    }
    if bytes.is_empty() || bytes.len() > AUDIO_MAX_BYTES {
        return refuse(
            &mut inner,
            131_053,
            format!(
                "Media upload error: {} bytes (audio: 1 to {AUDIO_MAX_BYTES})",
                bytes.len()
            ),
        );
    }
    inner.next_media += 1;
    let media_id = format!("{}", 9_000_000_000_000_000u64 + inner.next_media);
    inner.recorded.push(Recorded::MediaUpload {
        seq,
        at_ms: now_ms(),
        phone_number_id: phone,
        mime_type: mime_type.clone(),
        bytes: bytes.len(),
        media_id: Some(media_id.clone()),
    });
    inner.uploads.insert(media_id.clone(), (mime_type, bytes));
    axum::Json(json!({ "id": media_id })).into_response()
}

/// An audio message of uploaded media; as a voice message (`voice: true`) the file must
/// be mono Ogg/Opus of at most [`VOICE_NOTE_MAX_BYTES`] (the emulator refuses what
/// WhatsApp would show as a plain file, so tests notice).
fn audio_message(
    inner: &mut Inner,
    seq: u64,
    phone: String,
    to: Option<String>,
    recipient: Option<String>,
    request: &Value,
) -> Response {
    let path = format!("/{phone}/messages");
    let Some(media_id) = request["audio"]["id"].as_str() else {
        return inner.refuse(
            seq,
            &path,
            131_008,
            "Required parameter is missing: audio.id",
        );
    };
    let voice = request["audio"]["voice"].as_bool().unwrap_or(false);
    let problem = match inner.uploads.get(media_id) {
        None => Some(format!("Media upload error: no media {media_id}")),
        Some((_, bytes)) if voice && !is_mono_ogg_opus(bytes) => {
            Some("Media upload error: a voice message must be mono Ogg/Opus".to_owned())
        }
        Some((_, bytes)) if voice && bytes.len() > VOICE_NOTE_MAX_BYTES => Some(format!(
            "Media upload error: a voice message of {} bytes is over {VOICE_NOTE_MAX_BYTES}",
            bytes.len()
        )),
        Some(_) => None,
    };
    if let Some(reason) = problem {
        return inner.refuse(seq, &path, 131_053, &reason);
    }
    let (id, error) = inner.free_form_send(seq, &to, &recipient);
    inner.recorded.push(Recorded::Audio {
        seq,
        at_ms: now_ms(),
        phone_number_id: phone,
        to: to.clone(),
        recipient: recipient.clone(),
        media_id: media_id.to_owned(),
        voice,
        id: id.clone(),
    });
    if let Some(error) = error {
        return error.response();
    }
    accepted(&to, &recipient, json!({ "id": id }))
}

/// `GET /_emulator/uploads/{id}`: the bytes of an uploaded file.
async fn control_upload(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    match lock(&state).uploads.get(&id) {
        Some((mime_type, bytes)) => {
            ([(header::CONTENT_TYPE, mime_type.clone())], bytes.clone()).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The id of sent message `seq` to `target`: Meta's ids of sent messages hold the
/// recipient's number, as inbound ones do.
fn sent_id(target: Option<&str>, seq: u64) -> String {
    let party = target.unwrap_or_default();
    crate::meta::wamid(party.trim_start_matches('+'), u128::from(seq))
}

/// Meta's answer to an accepted send: the contact as addressed, and the message.
fn accepted(to: &Option<String>, recipient: &Option<String>, message: Value) -> Response {
    let contact = match (to, recipient) {
        (Some(number), _) => json!({ "input": number, "wa_id": number.trim_start_matches('+') }),
        (None, Some(user)) => json!({ "input": user, "user_id": user }),
        (None, None) => json!({}),
    };
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [contact],
        "messages": [message],
    }))
    .into_response()
}

fn read_receipt(inner: &mut Inner, seq: u64, phone: &str, request: &Value) -> Response {
    let (Some("read"), Some(message_id)) =
        (request["status"].as_str(), request["message_id"].as_str())
    else {
        inner.recorded.push(Recorded::Refused {
            seq,
            at_ms: now_ms(),
            path: format!("/{phone}/messages"),
            code: 100,
            reason: "status must be read, with a message_id".into(),
        });
        return ErrorSpec::new(400, 100, "(#100) Invalid parameter").response();
    };
    let typing = match request.get("typing_indicator") {
        None => false,
        Some(t) if t["type"] == "text" => true,
        Some(_) => {
            inner.recorded.push(Recorded::Refused {
                seq,
                at_ms: now_ms(),
                path: format!("/{phone}/messages"),
                code: 100,
                reason: "typing_indicator.type must be text".into(),
            });
            return ErrorSpec::new(400, 100, "(#100) Invalid parameter").response();
        }
    };
    let error = inner.take_fault(Endpoint::Read, None);
    inner.recorded.push(Recorded::Read {
        seq,
        at_ms: now_ms(),
        phone_number_id: phone.to_owned(),
        message_id: message_id.to_owned(),
        typing,
        answered: error.is_none(),
    });
    match error {
        Some(e) => e.response(),
        None => axum::Json(json!({ "success": true })).into_response(),
    }
}

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

async fn control_recorded(State(state): State<Shared>, Query(q): Query<Since>) -> Response {
    let inner = lock(&state);
    let items: Vec<&Recorded> = inner
        .recorded
        .iter()
        .filter(|r| r.seq() > q.since)
        .collect();
    axum::Json(json!({ "recorded": items })).into_response()
}

async fn control_add_media(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mime_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let id = add_media(
        &state,
        MediaSpec {
            bytes: body.to_vec(),
            mime_type,
            ..MediaSpec::default()
        },
    );
    axum::Json(json!({ "id": id })).into_response()
}

async fn control_fault(
    State(state): State<Shared>,
    axum::Json(fault): axum::Json<Fault>,
) -> Response {
    inject(&state, fault);
    StatusCode::NO_CONTENT.into_response()
}

async fn control_clear_faults(State(state): State<Shared>) -> Response {
    lock(&state).faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

/// Talks to an emulator running in another process through its control endpoints.
#[derive(Debug, Clone)]
pub struct EmulatorClient {
    base: String,
    http: reqwest::Client,
}

impl EmulatorClient {
    pub fn new(base_url: &str) -> Self {
        EmulatorClient {
            base: base_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// Whether the emulator answers.
    pub async fn healthy(&self) -> bool {
        self.http
            .get(format!("{}/_emulator/health", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// What was received after sequence number `since`.
    pub async fn recorded(&self, since: u64) -> Result<Vec<Recorded>, reqwest::Error> {
        #[derive(Deserialize)]
        struct Answer {
            recorded: Vec<Recorded>,
        }
        let answer: Answer = self
            .http
            .get(format!("{}/_emulator/recorded?since={since}", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(answer.recorded)
    }

    /// Uploads a media file; returns its id.
    pub async fn add_media(
        &self,
        bytes: Vec<u8>,
        mime_type: &str,
    ) -> Result<String, reqwest::Error> {
        #[derive(Deserialize)]
        struct Answer {
            id: String,
        }
        let answer: Answer = self
            .http
            .post(format!("{}/_emulator/media", self.base))
            .header(header::CONTENT_TYPE, mime_type)
            .body(bytes)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(answer.id)
    }

    /// The bytes of a file the business uploaded (a voice reply).
    pub async fn uploaded(&self, media_id: &str) -> Result<Vec<u8>, reqwest::Error> {
        Ok(self
            .http
            .get(format!("{}/_emulator/uploads/{media_id}", self.base))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?
            .to_vec())
    }

    /// Scripts a failure.
    pub async fn inject(&self, fault: &Fault) -> Result<(), reqwest::Error> {
        self.http
            .post(format!("{}/_emulator/faults", self.base))
            .json(fault)
            .send()
            .await?
            .error_for_status()
            .map(drop)
    }

    /// Clears scripted failures.
    pub async fn clear_faults(&self) -> Result<(), reqwest::Error> {
        self.http
            .delete(format!("{}/_emulator/faults", self.base))
            .send()
            .await?
            .error_for_status()
            .map(drop)
    }
}
