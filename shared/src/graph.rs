//! The WhatsApp Cloud API (Graph API) calls Remedios makes.
//!
//! - [`GraphClient::media_info`]: `GET /{version}/{media-id}` → URL, type, size, hash.
//! - [`GraphClient::download`]: the media file, bounded in size, from Meta's domains
//!   only (no server-side request forgery through a crafted URL or redirect), with
//!   its SHA-256 checked.
//! - [`GraphClient::send_text`]: `POST /{version}/{phone-number-id}/messages`.
//! - [`GraphClient::mark_read`]: the read receipt, with the typing indicator.
//!
//! Errors are classified as Meta documents them ([`ErrorClass`]) so callers can tell
//! a rate limit (retry later) from a closed 24-hour window (do not retry) from an
//! expired token (fail loudly). The client makes one attempt per call; retrying is
//! the caller's decision.

use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use url::{Host, Url};

use crate::config::{Choice, ConfigError, Env, Origin, SecretVar, Setting, Text, UrlVar, Vars};
use crate::secrets::{Secret, SecretSource};

/// Meta's domains that media downloads may come from.
pub const META_MEDIA_DOMAINS: &[&str] = &["fbsbx.com", "facebook.com", "fbcdn.net", "whatsapp.net"];

/// The Graph API version we call unless configured otherwise.
pub const DEFAULT_VERSION: &str = "v24.0";

/// The Graph API base URL.
pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";

/// How the client reaches the Graph API.
#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// `https://graph.facebook.com`, or a local emulator.
    pub base_url: Url,
    /// `v24.0`.
    pub version: String,
    /// The system-user access token.
    pub token: Secret,
    /// Host names (or domain suffixes) media may be downloaded from.
    pub media_hosts: Vec<String>,
    /// Timeout of one request.
    pub timeout: Duration,
}

/// The default timeout of one Graph API request (a 16 MiB media download included).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The timeout of one `/messages` request (a text sent, a read receipt): a small JSON
/// exchange, which gets no longer than this even when the client's timeout is longer, so
/// the worst case of a send can be reserved for within an invocation.
pub const MESSAGES_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the Graph API is, read from the environment at cold start; the access token is
/// a secret resolved apart ([`crate::config::Env::secret`], then [`GraphEndpoint::with_token`]).
/// Read from [`GRAPH_API_BASE_URL`], [`GRAPH_API_VERSION`] and [`GRAPH_MEDIA_HOSTS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphEndpoint {
    pub base_url: Url,
    pub version: String,
    pub media_hosts: Vec<String>,
    pub timeout: Duration,
}

/// The token the transcriber and the responder call the Graph API with.
pub const WHATSAPP_ACCESS_TOKEN: SecretVar = SecretVar {
    name: "WHATSAPP_ACCESS_TOKEN",
    doc: "the WhatsApp Cloud API access token (a system-user token)",
    required: true,
};

pub const GRAPH_API_BASE_URL: UrlVar = UrlVar {
    name: "GRAPH_API_BASE_URL",
    default: Some(DEFAULT_BASE_URL),
    doc: "where the Graph API is (the emulator in development)",
    origin: Origin::Deployment,
};
pub const GRAPH_API_VERSION: Choice = Choice {
    name: "GRAPH_API_VERSION",
    default: DEFAULT_VERSION,
    doc: "the Graph API version",
};
pub const GRAPH_MEDIA_HOSTS: Text = Text::wired(
    "GRAPH_MEDIA_HOSTS",
    "hosts media may come from besides Meta's media domains (the emulator)",
    false,
);

impl GraphEndpoint {
    /// What [`GraphEndpoint::from_env`] reads; `media` when the function downloads media.
    pub fn settings(media: bool) -> Vec<Setting> {
        let mut settings = vec![GRAPH_API_BASE_URL.setting(), GRAPH_API_VERSION.setting()];
        if media {
            settings.push(GRAPH_MEDIA_HOSTS.setting());
        }
        settings
    }

    /// Reads `GRAPH_API_BASE_URL`, `GRAPH_API_VERSION` and `GRAPH_MEDIA_HOSTS`.
    pub fn from_env<V: Vars>(env: &Env<V>) -> Result<Self, ConfigError> {
        let base_url = GRAPH_API_BASE_URL.read(env)?;
        let version: String = GRAPH_API_VERSION.read(env)?;
        let well_formed = version.len() >= 2
            && version.starts_with('v')
            && version[1..].chars().all(|c| c.is_ascii_digit() || c == '.');
        if !well_formed {
            return Err(ConfigError::new(
                "GRAPH_API_VERSION",
                format!("is {version:?}; use a Graph API version such as {DEFAULT_VERSION:?}"),
            ));
        }
        let mut media_hosts: Vec<String> =
            META_MEDIA_DOMAINS.iter().map(|d| (*d).to_owned()).collect();
        if let Some(list) = GRAPH_MEDIA_HOSTS.get(env) {
            let extra: Vec<String> = list
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect();
            if extra.is_empty() {
                return Err(ConfigError::new(
                    "GRAPH_MEDIA_HOSTS",
                    "lists no host: give comma-separated host names to allow besides Meta's \
domains, or unset it",
                ));
            }
            media_hosts.extend(extra);
        }
        Ok(GraphEndpoint {
            base_url,
            version,
            media_hosts,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The client settings, with the resolved access token.
    pub fn with_token(self, token: Secret) -> GraphSettings {
        GraphSettings {
            base_url: self.base_url,
            version: self.version,
            token,
            media_hosts: self.media_hosts,
            timeout: self.timeout,
        }
    }
}

/// What the Graph API says about a media id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MediaInfo {
    #[serde(default)]
    pub id: String,
    pub url: String,
    #[serde(default)]
    pub mime_type: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default, deserialize_with = "number_or_string")]
    pub file_size: Option<u64>,
}

/// Who a message goes to: a phone number (`to`) or a business-scoped id (`recipient`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    Phone(String),
    UserId(String),
}

/// Meta's answer to a sent message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SentMessage {
    /// The id of the message we sent (`wamid.…`).
    pub id: String,
}

/// How an error should be handled, per Meta's error code reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Throughput, app or pair rate limit (HTTP 429, codes 4, 80007, 130429, 131056):
    /// retry later with backoff.
    RateLimited,
    /// Meta is overloaded or failed (5xx, codes 1, 2, 131000, 131016, 131057, 133004)
    /// or the network failed: retry with backoff.
    Transient,
    /// More than 24 hours since the user last wrote (131047): a free-form reply is
    /// not allowed. Do not retry.
    Reengagement,
    /// The access token expired or is invalid (190, 0): nothing works until an
    /// operator replaces it.
    Auth,
    /// Anything else: a bad request, a policy block, an unknown user. Do not retry.
    Permanent,
}

/// A failed Graph API call.
#[derive(Debug, Error)]
pub enum GraphError {
    /// Meta answered with an error object.
    #[error("Graph API error {code} (HTTP {status}): {message}{}", details.as_deref().map(|d| format!(" — {d}")).unwrap_or_default())]
    Api {
        status: u16,
        code: i64,
        message: String,
        details: Option<String>,
        fbtrace_id: Option<String>,
        /// `Retry-After`, when Meta sent one.
        retry_after: Option<Duration>,
    },
    /// Meta answered with an error status but no error object.
    #[error("Graph API answered HTTP {status} without an error object")]
    Status { status: u16 },
    /// The request did not get an answer (connection refused, timeout, reset).
    #[error("Graph API request failed: {0}")]
    Transport(String),
    /// The answer could not be read.
    #[error("Graph API answer could not be read: {0}")]
    Decode(String),
    /// The media URL points somewhere we do not download from.
    #[error("refused to download media from {host:?}: not one of Meta's media hosts")]
    ForbiddenHost { host: String },
    /// The media is larger than we accept.
    #[error("media is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: u64, limit: u64 },
    /// The media's SHA-256 is not the one Meta announced.
    #[error("media checksum mismatch: expected {expected}, got {actual}")]
    Checksum { expected: String, actual: String },
}

impl GraphError {
    /// How to handle this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            GraphError::Api { status, code, .. } => classify(*status, *code),
            GraphError::Status { status } if *status == 429 => ErrorClass::RateLimited,
            GraphError::Status { status } if *status >= 500 => ErrorClass::Transient,
            GraphError::Status { status } if *status == 401 => ErrorClass::Auth,
            GraphError::Transport(_) => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }

    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.class(),
            ErrorClass::RateLimited | ErrorClass::Transient
        )
    }

    /// Meta's error code, when there is one.
    pub fn code(&self) -> Option<i64> {
        match self {
            GraphError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// How long Meta asked us to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GraphError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The class of a Graph API error code and HTTP status.
pub fn classify(status: u16, code: i64) -> ErrorClass {
    match code {
        4 | 80007 | 130429 | 131056 => ErrorClass::RateLimited,
        131047 => ErrorClass::Reengagement,
        0 | 190 => ErrorClass::Auth,
        1 | 2 | 131000 | 131016 | 131057 | 133004 => ErrorClass::Transient,
        _ if status == 429 => ErrorClass::RateLimited,
        _ if status >= 500 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// The client. Cheap to clone (clones share the token); build it once per container.
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    settings: GraphSettings,
    /// The access token in use: [`GraphSettings::token`] until [`Self::replace_token`].
    token: std::sync::Arc<std::sync::RwLock<Secret>>,
    /// Where the token is read again when the Graph API refuses it ([`Self::reread_token`]).
    token_source: Option<(aws_config::SdkConfig, SecretSource)>,
}

impl GraphClient {
    /// A client for `settings`. Redirects are followed only to allowed media hosts.
    pub fn new(settings: GraphSettings) -> Result<Self, GraphError> {
        let hosts = settings.media_hosts.clone();
        let base_host = settings.base_url.host_str().map(str::to_owned);
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            let allowed = attempt.previous().len() < 5
                && (host_allowed(attempt.url(), &hosts)
                    || attempt.url().host_str().map(str::to_owned) == base_host);
            if allowed {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let http = reqwest::Client::builder()
            .user_agent(concat!("remedios/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            .connect_timeout(Duration::from_secs(5))
            .redirect(policy)
            .build()
            .map_err(|e| GraphError::Transport(e.to_string()))?;
        let token = std::sync::Arc::new(std::sync::RwLock::new(settings.token.clone()));
        Ok(GraphClient {
            http,
            settings,
            token,
            token_source: None,
        })
    }

    /// Reads the access token again from `source` when the Graph API refuses the one in
    /// use as expired or invalid, so a token an operator replaced in SSM works at once in
    /// warm containers too. Only an SSM parameter is read again (a token given directly
    /// cannot change).
    pub fn with_token_source(mut self, sdk: aws_config::SdkConfig, source: SecretSource) -> Self {
        if matches!(source, SecretSource::SsmParameter(_)) {
            self.token_source = Some((sdk, source));
        }
        self
    }

    /// `call`, made once more with a token read again when the Graph API refused the one in
    /// use ([`ErrorClass::Auth`]) and its SSM parameter holds another.
    pub async fn fresh_token_once<T, F, Fut>(&self, mut call: F) -> Result<T, GraphError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, GraphError>>,
    {
        match call().await {
            Err(e) if e.class() == ErrorClass::Auth && self.reread_token().await => call().await,
            answered => answered,
        }
    }

    /// Reads the access token again (after an [`ErrorClass::Auth`] answer); whether a
    /// different one is now in use, so the call is worth making again.
    pub async fn reread_token(&self) -> bool {
        let Some((sdk, source)) = &self.token_source else {
            return false;
        };
        match crate::secrets::load_each(sdk, [source]).await {
            Ok([token]) => {
                let changed = self.replace_token(token);
                if changed {
                    tracing::warn!(
                        "the Graph API refused the access token; using the one now in its SSM parameter"
                    );
                } else {
                    tracing::error!(
                        "the Graph API refused the access token, and its SSM parameter still holds the same one: replace it"
                    );
                }
                changed
            }
            Err(e) => {
                tracing::error!(error = %e, "the Graph API refused the access token, and it could not be read again");
                false
            }
        }
    }

    /// The settings this client was built with (with the token it was given first).
    pub fn settings(&self) -> &GraphSettings {
        &self.settings
    }

    /// Uses `token` from now on (an operator replaced an expired one); whether it differs
    /// from the one in use.
    pub fn replace_token(&self, token: Secret) -> bool {
        let mut current = self
            .token
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = current.expose() != token.expose();
        *current = token;
        changed
    }

    fn bearer(&self) -> String {
        self.token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .expose()
            .to_owned()
    }

    fn endpoint(&self, path: &str) -> Result<Url, GraphError> {
        let base = self.settings.base_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{}/{path}", self.settings.version))
            .map_err(|e| GraphError::Decode(format!("bad Graph API URL: {e}")))
    }

    /// Looks up a media id.
    pub async fn media_info(
        &self,
        media_id: &str,
        phone_number_id: Option<&str>,
    ) -> Result<MediaInfo, GraphError> {
        let mut url = self.endpoint(&urlencode_segment(media_id))?;
        if let Some(p) = phone_number_id {
            url.query_pairs_mut().append_pair("phone_number_id", p);
        }
        let response = self
            .http
            .get(url)
            .bearer_auth(self.bearer())
            .send()
            .await
            .map_err(transport)?;
        json_or_error(response).await
    }

    /// Downloads the media `info` describes: only from allowed hosts, refusing files
    /// over `max_bytes` before and while downloading, and checking the SHA-256.
    pub async fn download(&self, info: &MediaInfo, max_bytes: u64) -> Result<Bytes, GraphError> {
        if let Some(size) = info.file_size.filter(|&s| s > max_bytes) {
            return Err(GraphError::TooLarge {
                size,
                limit: max_bytes,
            });
        }
        let url = Url::parse(&info.url).map_err(|_| GraphError::ForbiddenHost {
            host: info.url.chars().take(100).collect(),
        })?;
        if !host_allowed(&url, &self.settings.media_hosts) {
            return Err(GraphError::ForbiddenHost {
                host: url.host_str().unwrap_or_default().to_owned(),
            });
        }
        let response = self
            .http
            .get(url)
            .bearer_auth(self.bearer())
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(error_from(response).await);
        }
        if let Some(size) = response.content_length().filter(|&s| s > max_bytes) {
            return Err(GraphError::TooLarge {
                size,
                limit: max_bytes,
            });
        }
        let capacity = response.content_length().unwrap_or(0).min(max_bytes) as usize;
        let mut body = BytesMut::with_capacity(capacity);
        let mut hasher = Sha256::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(transport)?;
            let size = (body.len() + chunk.len()) as u64;
            if size > max_bytes {
                return Err(GraphError::TooLarge {
                    size,
                    limit: max_bytes,
                });
            }
            hasher.update(&chunk);
            body.extend_from_slice(&chunk);
        }
        let actual: [u8; 32] = hasher.finalize().into();
        if let Some(expected) = info.sha256.as_deref().filter(|s| !s.is_empty()) {
            match decode_digest(expected) {
                Some(want) if want == actual => {}
                _ => {
                    return Err(GraphError::Checksum {
                        expected: expected.to_owned(),
                        actual: hex::encode(actual),
                    });
                }
            }
        }
        Ok(body.freeze())
    }

    /// Sends a text message, quoting `reply_to` when given.
    pub async fn send_text(
        &self,
        phone_number_id: &str,
        to: &Recipient,
        body: &str,
        reply_to: Option<&str>,
    ) -> Result<SentMessage, GraphError> {
        let mut message = serde_json::json!({
            "type": "text",
            "text": { "body": body, "preview_url": false },
        });
        if let Some(id) = reply_to {
            message["context"] = serde_json::json!({ "message_id": id });
        }
        self.send(phone_number_id, to, message).await
    }

    /// Uploads `bytes` (of MIME type `mime_type`, named `file_name`) to the business
    /// number's media, for a message to send: its media id.
    pub async fn upload_media(
        &self,
        phone_number_id: &str,
        bytes: Vec<u8>,
        mime_type: &str,
        file_name: &str,
    ) -> Result<String, GraphError> {
        let url = self.endpoint(&format!("{}/media", urlencode_segment(phone_number_id)))?;
        let file = reqwest::multipart::Part::bytes(bytes)
            .file_name(file_name.to_owned())
            .mime_str(mime_type)
            .map_err(|e| GraphError::Decode(format!("bad MIME type {mime_type}: {e}")))?;
        let form = reqwest::multipart::Form::new()
            .text("messaging_product", "whatsapp")
            .text("type", mime_type.to_owned())
            .part("file", file);
        let response = self
            .http
            .post(url)
            .bearer_auth(self.bearer())
            .timeout(MESSAGES_TIMEOUT.min(self.settings.timeout))
            .multipart(form)
            .send()
            .await
            .map_err(transport)?;
        #[derive(Deserialize)]
        struct Answer {
            id: String,
        }
        let answer: Answer = json_or_error(response).await?;
        Ok(answer.id)
    }

    /// Sends the uploaded Ogg/Opus file `media_id` as a voice message (`voice: true`:
    /// WhatsApp shows it as a voice note, with a transcript for many users).
    pub async fn send_voice(
        &self,
        phone_number_id: &str,
        to: &Recipient,
        media_id: &str,
    ) -> Result<SentMessage, GraphError> {
        let message = serde_json::json!({
            "type": "audio",
            "audio": { "id": media_id, "voice": true },
        });
        self.send(phone_number_id, to, message).await
    }

    /// Sends the approved template `name` in `language` (a code such as `en_US`), without
    /// parameters: what may reach a user outside the 24-hour window.
    pub async fn send_template(
        &self,
        phone_number_id: &str,
        to: &Recipient,
        name: &str,
        language: &str,
    ) -> Result<SentMessage, GraphError> {
        let message = serde_json::json!({
            "type": "template",
            "template": { "name": name, "language": { "code": language } },
        });
        self.send(phone_number_id, to, message).await
    }

    /// Sends `message` (its type and content) to `to`.
    async fn send(
        &self,
        phone_number_id: &str,
        to: &Recipient,
        mut message: serde_json::Value,
    ) -> Result<SentMessage, GraphError> {
        message["messaging_product"] = "whatsapp".into();
        message["recipient_type"] = "individual".into();
        match to {
            Recipient::Phone(number) => {
                message["to"] = format!("+{}", number.trim_start_matches('+')).into();
            }
            Recipient::UserId(id) => message["recipient"] = id.clone().into(),
        }
        #[derive(Deserialize)]
        struct Answer {
            messages: Vec<SentMessage>,
        }
        let answer: Answer = self.post_messages(phone_number_id, &message).await?;
        answer
            .messages
            .into_iter()
            .next()
            .ok_or_else(|| GraphError::Decode("send answer has no messages[].id".into()))
    }

    /// Marks `message_id` (and the user's earlier messages) as read, and with
    /// `typing` shows the typing indicator until we reply (or 25 seconds pass).
    pub async fn mark_read(
        &self,
        phone_number_id: &str,
        message_id: &str,
        typing: bool,
    ) -> Result<(), GraphError> {
        let mut request = serde_json::json!({
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
        });
        if typing {
            request["typing_indicator"] = serde_json::json!({ "type": "text" });
        }
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            success: bool,
        }
        let answer: Answer = self.post_messages(phone_number_id, &request).await?;
        if answer.success {
            Ok(())
        } else {
            Err(GraphError::Decode(
                "mark-as-read answer has no \"success\": true".into(),
            ))
        }
    }

    async fn post_messages<T: serde::de::DeserializeOwned>(
        &self,
        phone_number_id: &str,
        body: &serde_json::Value,
    ) -> Result<T, GraphError> {
        let url = self.endpoint(&format!("{}/messages", urlencode_segment(phone_number_id)))?;
        let response = self
            .http
            .post(url)
            .bearer_auth(self.bearer())
            .timeout(MESSAGES_TIMEOUT.min(self.settings.timeout))
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        json_or_error(response).await
    }
}

/// Whether `url` may be downloaded from: https to one of `hosts` (a host name, or a
/// domain whose subdomains are allowed too), or http to a listed loopback host (a
/// local emulator).
pub fn host_allowed(url: &Url, hosts: &[String]) -> bool {
    let Some(host) = url.host() else {
        return false;
    };
    let name = match &host {
        Host::Domain(d) => d.to_ascii_lowercase(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => format!("[{ip}]"),
    };
    let listed = hosts.iter().any(|allowed| {
        let allowed = allowed.trim().trim_start_matches('.').to_ascii_lowercase();
        !allowed.is_empty() && (name == allowed || name.ends_with(&format!(".{allowed}")))
    });
    let loopback = match host {
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
    };
    listed && (url.scheme() == "https" || (url.scheme() == "http" && loopback))
}

fn urlencode_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Meta gives media hashes as hex or base64.
fn decode_digest(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    let mut out = [0u8; 32];
    if s.len() == 64 && hex::decode_to_slice(s, &mut out).is_ok() {
        return Some(out);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
        .ok()?;
    bytes.try_into().ok()
}

fn transport(e: reqwest::Error) -> GraphError {
    // Without the URL: it may carry a media token in its query.
    GraphError::Transport(e.without_url().to_string())
}

async fn json_or_error<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, GraphError> {
    if !response.status().is_success() {
        return Err(error_from(response).await);
    }
    let bytes = response.bytes().await.map_err(transport)?;
    serde_json::from_slice(&bytes).map_err(|e| GraphError::Decode(e.to_string()))
}

/// The error body Meta sends: `{"error": {...}}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[derive(Debug, Deserialize)]
struct ErrorObject {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: i64,
    #[serde(default)]
    error_data: Option<ErrorData>,
    #[serde(default)]
    fbtrace_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorData {
    #[serde(default)]
    details: Option<String>,
}

async fn error_from(response: reqwest::Response) -> GraphError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let bytes = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(ErrorBody { error }) => GraphError::Api {
            status,
            code: error.code,
            message: error.message,
            details: error.error_data.and_then(|d| d.details),
            fbtrace_id: error.fbtrace_id,
            retry_after,
        },
        Err(_) => GraphError::Status { status },
    }
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(u64),
        Str(String),
    }
    Ok(match Option::<NumOrStr>::deserialize(d)? {
        Some(NumOrStr::Num(n)) => Some(n),
        Some(NumOrStr::Str(s)) => s.trim().parse().ok(),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        META_MEDIA_DOMAINS.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn only_https_urls_on_meta_domains_are_downloaded() {
        let ok = |u: &str| host_allowed(&Url::parse(u).unwrap(), &hosts());
        assert!(ok(
            "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1"
        ));
        assert!(ok("https://scontent.xx.fbcdn.net/v/t1/a.ogg"));
        assert!(!ok("http://lookaside.fbsbx.com/x"), "plain http to Meta");
        assert!(!ok("https://fbsbx.com.evil.example/x"));
        assert!(!ok("https://evilfbsbx.com/x"));
        assert!(!ok("https://169.254.169.254/latest/meta-data/"));
        assert!(!ok("http://127.0.0.1:9000/x"), "loopback not listed");
        let local = vec!["127.0.0.1".to_owned()];
        assert!(host_allowed(
            &Url::parse("http://127.0.0.1:9000/x").unwrap(),
            &local
        ));
    }

    #[test]
    fn the_endpoint_defaults_to_meta_and_reads_overrides() {
        let meta = GraphEndpoint::from_env(&Env([("X", "")])).unwrap();
        assert_eq!(meta.base_url.as_str(), "https://graph.facebook.com/");
        assert_eq!(meta.version, DEFAULT_VERSION);
        assert_eq!(meta.media_hosts, hosts());
        let local = GraphEndpoint::from_env(&Env([
            ("GRAPH_API_BASE_URL", "http://127.0.0.1:8080"),
            ("GRAPH_API_VERSION", "v23.0"),
            ("GRAPH_MEDIA_HOSTS", " 127.0.0.1 , LocalHost,"),
        ]))
        .unwrap();
        assert_eq!(local.version, "v23.0");
        let mut wanted = hosts();
        wanted.extend(["127.0.0.1".to_owned(), "localhost".to_owned()]);
        assert_eq!(local.media_hosts, wanted, "added to Meta's domains");
        let settings = local.with_token(Secret::new("t"));
        assert_eq!(settings.token.expose(), "t");
        for (name, value) in [
            ("GRAPH_API_VERSION", "24"),
            ("GRAPH_MEDIA_HOSTS", " , "),
            ("GRAPH_API_BASE_URL", "graph.facebook.com"),
        ] {
            let err = GraphEndpoint::from_env(&Env([(name, value)])).unwrap_err();
            assert_eq!(err.name, name, "{err}");
        }
    }

    #[test]
    fn error_codes_are_classified_as_meta_documents() {
        assert_eq!(classify(400, 130429), ErrorClass::RateLimited);
        assert_eq!(classify(400, 131056), ErrorClass::RateLimited);
        assert_eq!(classify(400, 80007), ErrorClass::RateLimited);
        assert_eq!(classify(400, 4), ErrorClass::RateLimited);
        assert_eq!(classify(429, 999), ErrorClass::RateLimited);
        assert_eq!(classify(400, 131047), ErrorClass::Reengagement);
        assert_eq!(classify(401, 190), ErrorClass::Auth);
        assert_eq!(classify(500, 131000), ErrorClass::Transient);
        assert_eq!(classify(503, 7), ErrorClass::Transient);
        assert_eq!(classify(400, 131026), ErrorClass::Permanent);
        assert_eq!(classify(400, 100), ErrorClass::Permanent);
    }

    #[test]
    fn digests_are_read_as_hex_or_base64() {
        let digest: [u8; 32] = Sha256::digest(b"voice").into();
        assert_eq!(decode_digest(&hex::encode(digest)), Some(digest));
        let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
        assert_eq!(decode_digest(&b64), Some(digest));
        assert_eq!(decode_digest("nonsense"), None);
    }
}
