//! The webhook's Lambda handler: the handshake on `GET`, a notification on `POST`.

use std::time::Instant;

use aws_config::SdkConfig;
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use remedios_shared::clock::now_ms;
use remedios_shared::keys;
use remedios_shared::metrics::{Metrics, Unit};
use remedios_shared::queue::Queue;
use remedios_shared::secrets::{self, Secret, SecretError};
use remedios_shared::signature;
use remedios_shared::store::Store;
use remedios_shared::user::{TagKey, TagKeyError};
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::intake::{self, Intake, Triage};

/// The webhook, with its secrets and clients. Build it once per container.
#[derive(Debug, Clone)]
pub struct Webhook {
    verify_token: Secret,
    app_secret: Secret,
    queue: Queue,
    store: Store,
    max_body_bytes: usize,
    intake: Intake,
}

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    TagKey(#[from] TagKeyError),
}

impl Webhook {
    /// Resolves the secrets (from SSM when configured so) and wires the clients.
    pub async fn connect(config: &Config, sdk: &SdkConfig) -> Result<Self, StartError> {
        let [verify_token, app_secret, tag_key] = secrets::load_each(
            sdk,
            [
                &config.verify_token,
                &config.app_secret,
                &config.user_tag_key,
            ],
        )
        .await?;
        Ok(Self::new(
            config,
            verify_token,
            app_secret,
            TagKey::new(tag_key.expose())?,
            Queue::new(remedios_shared::aws::sqs(sdk), &config.inbound_queue_url),
            Store::new(remedios_shared::aws::s3(sdk, &config.aws), &config.bucket),
        ))
    }

    /// A webhook with resolved secrets and ready clients.
    pub fn new(
        config: &Config,
        verify_token: Secret,
        app_secret: Secret,
        tags: TagKey,
        queue: Queue,
        store: Store,
    ) -> Self {
        Webhook {
            verify_token,
            app_secret,
            queue,
            store,
            max_body_bytes: config.max_body_bytes,
            intake: Intake {
                allow: config.allowed_senders.clone(),
                staff: config.staff.clone(),
                tags,
                numbers: config.phone_number_ids.clone(),
            },
        }
    }

    /// Answers one request. Never fails: every outcome is a status code.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        match *request.method() {
            Method::GET => self.handshake(&request),
            Method::POST => self.notification(&request).await,
            _ => respond(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST"),
        }
    }

    fn handshake(&self, request: &Request) -> Response<Body> {
        let mode = query_param(request, "hub.mode");
        let token = query_param(request, "hub.verify_token");
        let challenge = query_param(request, "hub.challenge").filter(|c| !c.is_empty());
        let token_ok = token
            .as_deref()
            .is_some_and(|t| constant_time_eq(t.as_bytes(), self.verify_token.expose().as_bytes()));
        match (mode.as_deref(), challenge) {
            (Some("subscribe"), Some(challenge)) if token_ok => {
                info!("webhook verification handshake accepted");
                respond(StatusCode::OK, challenge)
            }
            _ => {
                warn!(
                    mode = mode.as_deref().unwrap_or(""),
                    "webhook verification handshake refused"
                );
                respond(StatusCode::FORBIDDEN, "verification refused")
            }
        }
    }

    async fn notification(&self, request: &Request) -> Response<Body> {
        let started = Instant::now();
        let body: &[u8] = request.body().as_ref();
        if body.len() > self.max_body_bytes {
            warn!(
                bytes = body.len(),
                limit = self.max_body_bytes,
                "refusing an oversized webhook body"
            );
            return respond(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        }
        let header = request
            .headers()
            .get(signature::HEADER)
            .map(|v| v.as_bytes());
        let triage = match intake::verify_and_triage(
            self.app_secret.expose().as_bytes(),
            header,
            body,
            now_ms(),
            &self.intake,
        ) {
            Ok(triage) => triage,
            Err(e) => {
                warn!(reason = %e, bytes = body.len(), "refusing a webhook POST with a bad signature");
                return respond(StatusCode::UNAUTHORIZED, "invalid signature");
            }
        };
        match self.enqueue(body, &triage).await {
            Ok(()) => {
                info!(
                    messages = triage.messages.len(),
                    statuses = triage.statuses,
                    refused_senders = triage.refused_senders,
                    echoes = triage.echoes,
                    staff = triage.staff,
                    other_numbers = triage.other_numbers,
                    quarantined = triage.quarantine.is_some(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "webhook notification accepted"
                );
                let count = |n: usize| n as f64;
                for (kind, n) in &triage.types {
                    Metrics::of("webhook")
                        .dimension("Type", *kind)
                        .value("Messages", Unit::Count, count(*n))
                        .emit();
                }
                Metrics::of("webhook")
                    .value("Statuses", Unit::Count, count(triage.statuses))
                    .value("RefusedSenders", Unit::Count, count(triage.refused_senders))
                    .value("OtherNumbers", Unit::Count, count(triage.other_numbers))
                    .value(
                        "Quarantined",
                        Unit::Count,
                        count(usize::from(triage.quarantine.is_some())),
                    )
                    .emit();
                respond(StatusCode::OK, "ok")
            }
            Err(e) => {
                error!(error = %e, messages = triage.messages.len(), "could not take the notification in; answering 500 so Meta delivers it again");
                respond(StatusCode::INTERNAL_SERVER_ERROR, "try again later")
            }
        }
    }

    /// Enqueues the planned messages, then keeps an unparsable body in quarantine.
    async fn enqueue(&self, body: &[u8], triage: &Triage) -> Result<(), DeliveryError> {
        self.queue.send_all(&triage.messages).await?;
        if let Some(reason) = &triage.quarantine {
            let digest = hex::encode(Sha256::digest(body));
            let key = keys::quarantine(now_ms() / 1000, &digest);
            self.store
                .put(&key, body.to_vec(), "application/json")
                .await?;
            error!(key = %key, reason = %reason, "kept a signed webhook body we could not fully parse in quarantine");
        }
        Ok(())
    }
}

/// Why a notification could not be taken in.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error(transparent)]
    Queue(#[from] remedios_shared::queue::QueueError),
    #[error(transparent)]
    Store(#[from] remedios_shared::store::StoreError),
}

fn respond(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A query parameter, from the Lambda event's parsed query or the raw URI.
fn query_param(request: &Request, name: &str) -> Option<String> {
    if let Some(v) = request
        .query_string_parameters_ref()
        .and_then(|q| q.first(name))
    {
        return Some(v.to_owned());
    }
    let query = request.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Length is not secret; the content comparison is constant-time.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
