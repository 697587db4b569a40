//! The webhook's test stack: moto (SQS + S3) started by the test, the inbound FIFO
//! queue and the bucket created on it, the real `Webhook` wired with the AWS SDK, and
//! requests shaped as API Gateway's HTTP API / a Lambda function URL deliver them
//! (payload format 2.0).

#![allow(dead_code)] // Each test binary uses its own share of the helpers.

use std::collections::HashMap;

use aws_sdk_sqs::types::QueueAttributeName;
use base64::Engine;
use lambda_http::{Body, Request, Response};
use remedios_shared::config::Env;
use remedios_shared::envelope::{self, InboundMessage};
use remedios_shared::keys;
use remedios_shared::signature;
use remedios_template::WEBHOOK_FUNCTION;
use remedios_testkit::iam::{self, Principal};
use remedios_testkit::meta;
use remedios_testkit::moto::{self, Moto, QueuePair, QueueSpec};
use serde_json::{Value, json};
use webhook::{Config, Webhook};

pub const APP_SECRET: &str = "test-app-secret-4f1c";
pub const VERIFY_TOKEN: &str = "verify me & trust=me";
pub const BUCKET: &str = "remedios-test";
pub const QUEUE: &str = "remedios-inbound";

/// moto, the queue and bucket on it, and a webhook connected to them.
pub struct TestBed {
    pub moto: Moto,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub queue: QueuePair,
    pub webhook: Webhook,
}

impl TestBed {
    /// A stack with the default configuration.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A stack whose webhook configuration has `extra` variables on top of the usual.
    pub async fn start_with(extra: &[(&str, &str)]) -> Self {
        Self::start_on(Moto::start_enforcing(vec![principal()]).await, extra).await
    }

    /// A stack on a moto without IAM: for the outage test, whose clients must outlive a
    /// restart of moto (which forgets its IAM users; AWS keeps them through an outage).
    pub async fn start_without_iam() -> Self {
        Self::start_on(Moto::start().await, &[]).await
    }

    async fn start_on(moto: Result<Moto, moto::MotoError>, extra: &[(&str, &str)]) -> Self {
        let moto = moto.unwrap_or_else(|e| {
            panic!("cannot start moto for the webhook tests: {e} (run scripts/bootstrap.sh)")
        });
        let sdk = moto.sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let s3 = moto::s3_client(&sdk);
        let queue = create_resources(&sqs, &s3).await;
        let webhook = connect(&moto, &queue.url, extra).await;
        TestBed {
            moto,
            sqs,
            s3,
            queue,
            webhook,
        }
    }

    /// Sends `request` through the webhook's handler.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        self.webhook.handle(request).await
    }

    /// POSTs `body` signed with the app secret, as Meta does.
    pub async fn post_signed(&self, body: &str) -> Response<Body> {
        self.handle(post(body.as_bytes(), Some(&sign(body.as_bytes()))))
            .await
    }

    /// Receives (and deletes) everything on the inbound queue, in delivery order.
    pub async fn drain(&self) -> Vec<Received> {
        drain(&self.sqs, &self.queue.url).await
    }

    /// The WhatsApp ids of everything on the queue, received and deleted, in order.
    pub async fn drained_ids(&self) -> Vec<String> {
        self.drain()
            .await
            .into_iter()
            .map(|r| r.envelope.id)
            .collect()
    }

    /// The keys under `quarantine/` in the bucket.
    pub async fn quarantined(&self) -> Vec<String> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(keys::QUARANTINE)
            .send()
            .await
            .expect("list the quarantine prefix");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    /// The bytes of `key` in the bucket.
    pub async fn object(&self, key: &str) -> Vec<u8> {
        self.s3
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .expect("get the object")
            .body
            .collect()
            .await
            .expect("read the object")
            .into_bytes()
            .to_vec()
    }

    /// Asserts that nothing is on the queue and nothing in quarantine.
    pub async fn assert_nothing_taken_in(&self) {
        assert_eq!(self.drain().await, Vec::new(), "nothing may be enqueued");
        assert_eq!(
            self.quarantined().await,
            Vec::<String>::new(),
            "nothing may be quarantined"
        );
    }
}

/// Creates the inbound queue pair and the bucket.
pub async fn create_resources(sqs: &aws_sdk_sqs::Client, s3: &aws_sdk_s3::Client) -> QueuePair {
    let queue = moto::create_queue_pair(sqs, &queue_spec())
        .await
        .expect("create the inbound queue on moto");
    moto::create_bucket(s3, BUCKET)
        .await
        .expect("create the bucket on moto");
    queue
}

/// The webhook's principal: its role in the template, over this test bed's queue and bucket.
pub fn principal() -> Principal {
    iam::function_principal(
        WEBHOOK_FUNCTION,
        &[
            ("InboundQueue.Arn", iam::queue_arn(&format!("{QUEUE}.fifo"))),
            ("Bucket.Arn", iam::bucket_arn(BUCKET)),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

pub fn queue_spec() -> QueueSpec {
    QueueSpec {
        name: QUEUE.to_owned(),
        visibility_timeout: std::time::Duration::from_secs(30),
        max_receive_count: 5,
    }
}

/// The webhook's environment for a moto at `moto` and a queue at `queue_url`.
pub fn environment(
    moto: &Moto,
    queue_url: &str,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("WHATSAPP_VERIFY_TOKEN", VERIFY_TOKEN),
        ("WHATSAPP_APP_SECRET", APP_SECRET),
        ("USER_TAG_KEY", meta::USER_TAG_KEY),
        ("INBOUND_QUEUE_URL", queue_url),
        ("BUCKET_NAME", BUCKET),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    vars
}

/// A webhook built the way `main` builds it: configuration, then `Webhook::connect`,
/// signed as the webhook's role (IAM enforced).
pub async fn connect(moto: &Moto, queue_url: &str, extra: &[(&str, &str)]) -> Webhook {
    let config = Config::from_env(&Env(environment(moto, queue_url, extra)))
        .expect("the test configuration is valid");
    Webhook::connect(&config, &function_sdk(moto).await)
        .await
        .expect("connect the webhook")
}

/// The SDK configuration the webhook runs with: its own principal's keys.
pub async fn function_sdk(moto: &Moto) -> aws_config::SdkConfig {
    moto.sdk_config_as(&iam::principal_name(WEBHOOK_FUNCTION))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// What a queue message carried.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub body: String,
    pub group_id: String,
    pub dedup_id: String,
    pub envelope: InboundMessage,
}

pub async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Received> {
    moto::drain(sqs, url, 1)
        .await
        .expect("drain the inbound queue")
        .into_iter()
        .map(|m| {
            let envelope = envelope::decode::<InboundMessage>(&m.body)
                .unwrap_or_else(|e| panic!("queue message is not an envelope: {e}: {}", m.body));
            Received {
                group_id: m.group_id.expect("queue message without a group id"),
                dedup_id: m.dedup_id.expect("queue message without a dedup id"),
                body: m.body,
                envelope,
            }
        })
        .collect()
}

/// Whether moto reports the queue as FIFO without content-based deduplication: the
/// webhook's deduplication ids are what makes duplicates disappear.
pub async fn queue_is_fifo_with_explicit_dedup(sqs: &aws_sdk_sqs::Client, url: &str) -> bool {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("queue attributes");
    let attrs = out.attributes.unwrap_or_default();
    attrs
        .get(&QueueAttributeName::FifoQueue)
        .map(String::as_str)
        == Some("true")
        && attrs
            .get(&QueueAttributeName::ContentBasedDeduplication)
            .map(String::as_str)
            != Some("true")
}

/// `sha256=<hex>` of `body` with the test app secret.
pub fn sign(body: &[u8]) -> String {
    meta::sign(APP_SECRET.as_bytes(), body)
}

/// An HTTP API (payload 2.0) / function URL event, turned into a request the way
/// `lambda_http` does for a deployed function.
pub fn event(
    method: &str,
    raw_query: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    base64: bool,
) -> Request {
    let mut h = serde_json::Map::new();
    for (k, v) in [
        ("host", "abc123.execute-api.eu-west-1.amazonaws.com"),
        ("user-agent", "facebookexternalua"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-for", "173.252.88.1"),
        ("accept", "*/*"),
    ] {
        h.insert(k.to_owned(), Value::from(v));
    }
    if body.is_some() {
        h.insert("content-type".into(), "application/json".into());
    }
    for (k, v) in headers {
        h.insert(k.to_ascii_lowercase(), Value::from(*v));
    }
    let body = body.map(|b| {
        if base64 {
            base64::engine::general_purpose::STANDARD.encode(b)
        } else {
            String::from_utf8(b.to_vec()).expect("text bodies in tests are UTF-8")
        }
    });
    let query: serde_json::Map<String, Value> = url::form_urlencoded::parse(raw_query.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::from(v.into_owned())))
        .collect();
    let mut e = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/webhook",
        "rawQueryString": raw_query,
        "headers": h,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": "/webhook",
                "protocol": "HTTP/1.1",
                "sourceIp": "173.252.88.1",
                "userAgent": "facebookexternalua"
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "11/Jan/2026:11:45:34 +0000",
            "timeEpoch": 1768131934837u64
        },
        "isBase64Encoded": base64,
    });
    if !query.is_empty() {
        e["queryStringParameters"] = Value::Object(query);
    }
    if let Some(b) = body {
        e["body"] = Value::from(b);
    }
    lambda_http::request::from_str(&e.to_string()).expect("lambda_http accepts the event")
}

/// A POST of `body` with an optional `X-Hub-Signature-256`.
pub fn post(body: &[u8], signature: Option<&str>) -> Request {
    let headers: Vec<(&str, &str)> = signature
        .map(|s| vec![(signature::HEADER, s)])
        .unwrap_or_default();
    event("POST", "", &headers, Some(body), false)
}

/// Meta's handshake: a GET with `query`.
pub fn get(query: &str) -> Request {
    event("GET", query, &[], None, false)
}

pub fn status(response: &Response<Body>) -> u16 {
    response.status().as_u16()
}

pub fn text(response: &Response<Body>) -> String {
    String::from_utf8_lossy(response.body().as_ref()).into_owned()
}

/// A user known by phone number.
pub fn phone_user(n: u32) -> meta::User {
    meta::User::phone(&format!("1555000{n:04}"), &format!("User {n}"))
}

/// A WhatsApp-style message id.
pub fn wamid(tag: &str) -> String {
    format!("wamid.HBgLMTU1NTAwMDAwMDEVAgASGBQzQUZB{tag}AA=")
}
