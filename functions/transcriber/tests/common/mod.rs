//! The transcriber against real components on loopback: moto (S3, SQS), the Graph API
//! emulator and a real whisper model, wired through the function's own configuration and
//! cold start ([`Config::from_env`], [`Transcriber::connect`]).

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use remedios_shared::config::Env;
use remedios_shared::envelope::{Content, ENVELOPE_VERSION, InboundMessage, MediaRef, ReplyJob};
use remedios_shared::queue;
use remedios_shared::store::Store;
use remedios_shared::user::Sender;
use remedios_template::TRANSCRIBER_FUNCTION;
use remedios_testkit::graph::GraphEmulator;
use remedios_testkit::iam::{self, Principal};
use remedios_testkit::meta;
use remedios_testkit::moto::{self, Moto, QueuePair, QueueSpec};
use remedios_testkit::paths;
use transcriber::{Config, Transcriber};

/// The access token the emulator accepts.
pub const TOKEN: &str = "EAAG-test-token";
/// The bucket the tests use.
pub const BUCKET: &str = "remedios-test";
/// Our business number's id.
pub const PHONE_NUMBER_ID: &str = "106540352242922";

/// A GGML model from the project cache (`scripts/models.sh` converts them), or a failure
/// that says how to get it.
pub fn model_path(file: &str) -> PathBuf {
    paths::whisper_model(file).unwrap_or_else(|e| panic!("{e}"))
}

/// The transcriber's principal: its role in the template, over this test bed's queues
/// and bucket.
pub fn principal() -> Principal {
    iam::function_principal(
        TRANSCRIBER_FUNCTION,
        &[
            ("InboundQueue.Arn", iam::queue_arn("remedios-inbound.fifo")),
            ("ReplyQueue.Arn", iam::queue_arn("remedios-reply.fifo")),
            ("Bucket.Arn", iam::bucket_arn(BUCKET)),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The running components and the transcriber wired to them.
pub struct TestBed {
    /// Kept for its lifetime: the emulator stops when dropped.
    #[allow(dead_code)]
    pub moto: Moto,
    pub graph: GraphEmulator,
    pub store: Store,
    pub sqs: aws_sdk_sqs::Client,
    pub reply: QueuePair,
    pub transcriber: Transcriber,
}

/// The transcriber's cold start over these components, signed as its own role; `vars`
/// override its environment (an empty value unsets a variable).
async fn connect(
    moto: &Moto,
    graph: &GraphEmulator,
    reply: &QueuePair,
    model: &str,
    vars: &[(&str, &str)],
) -> Transcriber {
    let model = model_path(model);
    let mut env: HashMap<String, String> = [
        ("BUCKET_NAME", BUCKET),
        ("REPLY_QUEUE_URL", reply.url.as_str()),
        ("WHATSAPP_ACCESS_TOKEN", TOKEN),
        ("GRAPH_API_BASE_URL", graph.base_url().as_str()),
        ("GRAPH_MEDIA_HOSTS", "127.0.0.1"),
        (
            "WHISPER_MODEL_PATH",
            model.to_str().expect("UTF-8 model path"),
        ),
        ("WHISPER_THREADS", "2"),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in vars {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let config = Config::from_env(&Env(env)).unwrap_or_else(|e| panic!("{e}"));
    // The function signs as its own role, as in Lambda; the setup as the admin.
    let function_sdk = moto
        .sdk_config_as(&iam::principal_name(TRANSCRIBER_FUNCTION))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Transcriber::connect(&config, &function_sdk)
        .await
        .unwrap_or_else(|e| panic!("transcriber cold start failed: {e}"))
}

/// A reply job as the responder would receive it, with its FIFO attributes.
#[derive(Debug)]
pub struct Received {
    pub job: ReplyJob,
    pub group_id: String,
    pub dedup_id: String,
}

impl TestBed {
    /// Starts moto and the emulator and builds the transcriber with `model` (a file name in
    /// the model cache) and extra configuration `vars`.
    pub async fn start(model: &str, vars: &[(&str, &str)]) -> Self {
        let moto = Moto::start_enforcing(vec![principal()])
            .await
            .unwrap_or_else(|e| panic!("cannot start moto: {e}"));
        let sdk = moto.sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let s3 = moto::s3_client(&sdk);
        moto::create_bucket(&s3, BUCKET).await.expect("bucket");
        let reply = moto::create_queue_pair(
            &sqs,
            &QueueSpec {
                name: "remedios-reply".into(),
                visibility_timeout: std::time::Duration::from_secs(60),
                max_receive_count: 5,
            },
        )
        .await
        .expect("reply queue");
        let graph = GraphEmulator::start(TOKEN).await.expect("graph emulator");
        let transcriber = connect(&moto, &graph, &reply, model, vars).await;
        TestBed {
            store: Store::new(s3, BUCKET),
            moto,
            graph,
            sqs,
            reply,
            transcriber,
        }
    }

    /// Another transcriber over the same components (another container's cold start),
    /// with `model` and `vars`.
    pub async fn connect(&self, model: &str, vars: &[(&str, &str)]) -> Transcriber {
        connect(&self.moto, &self.graph, &self.reply, model, vars).await
    }

    /// The inbound queue (failed records come back after `visibility`), and the
    /// transcriber's client of it, signed as its own role as under Lambda: to consume it,
    /// and to send voice notes to their lanes.
    pub async fn inbound_queue(
        &self,
        visibility: std::time::Duration,
    ) -> (QueuePair, remedios_shared::queue::Queue) {
        let inbound = moto::create_queue_pair(
            &self.sqs,
            &QueueSpec {
                name: "remedios-inbound".into(),
                visibility_timeout: visibility,
                max_receive_count: 5,
            },
        )
        .await
        .expect("the inbound queue");
        let function_sqs = aws_sdk_sqs::Client::new(
            &self
                .moto
                .sdk_config_as(&iam::principal_name(TRANSCRIBER_FUNCTION))
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let queue = remedios_shared::queue::Queue::new(function_sqs, &inbound.url);
        (inbound, queue)
    }

    /// Messages of `url` with the system attributes Lambda gets, not deleted: the first
    /// batch received within `limit` (empty if none came).
    pub async fn receive(
        &self,
        url: &str,
        limit: std::time::Duration,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receive");
            let messages = out.messages.unwrap_or_default();
            if !messages.is_empty() {
                return messages;
            }
        }
        Vec::new()
    }

    /// Everything waiting on `url`, received and deleted, waiting up to `limit` for the
    /// first batch.
    pub async fn take_all(
        &self,
        url: &str,
        limit: std::time::Duration,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        let mut wait = limit;
        loop {
            let batch = self.receive(url, wait).await;
            if batch.is_empty() {
                return all;
            }
            for m in &batch {
                self.sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
            all.extend(batch);
            // What is left is there already.
            wait = std::time::Duration::from_secs(1);
        }
    }

    /// Everything on the reply queue, received and deleted, in order.
    pub async fn replies(&self) -> Vec<Received> {
        moto::drain(&self.sqs, &self.reply.url, 0)
            .await
            .expect("drain the reply queue")
            .into_iter()
            .map(|m| Received {
                job: remedios_shared::envelope::decode(&m.body).expect("a reply job envelope"),
                group_id: m.group_id.unwrap_or_default(),
                dedup_id: m.dedup_id.unwrap_or_default(),
            })
            .collect()
    }

    /// An S3 object's bytes and content type; fails when it is missing.
    pub async fn object(&self, key: &str) -> (Vec<u8>, Option<String>) {
        let object = self
            .store
            .get(key)
            .await
            .expect("S3 get")
            .unwrap_or_else(|| panic!("no S3 object {key}"));
        (object.bytes.to_vec(), object.content_type)
    }
}

/// An inbound message from `wa_id` with WhatsApp id `id`.
pub fn message(wa_id: &str, id: &str, content: Content) -> InboundMessage {
    InboundMessage {
        v: ENVELOPE_VERSION,
        phone_number_id: PHONE_NUMBER_ID.into(),
        display_phone_number: None,
        sender: Sender {
            wa_id: Some(wa_id.into()),
            user_id: None,
            username: None,
            profile_name: Some("Test User".into()),
        },
        user: meta::user_tag(wa_id),
        message_tag: remedios_testkit::meta::message_tag(id),
        id: id.into(),
        timestamp: 1_764_000_000,
        received_at_ms: 1_764_000_000_123,
        context: None,
        referral: None,
        group_id: None,
        origin: Default::default(),
        content,
    }
}

/// A voice note (or audio file) content for media `media_id`.
pub fn audio(media_id: &str, mime_type: &str) -> Content {
    Content::Audio {
        media: MediaRef {
            id: media_id.into(),
            mime_type: Some(mime_type.into()),
            sha256: None,
        },
        voice: true,
    }
}

/// A text content.
pub fn text(body: &str) -> Content {
    Content::Text { body: body.into() }
}

/// An SQS record as Lambda delivers it from the inbound FIFO queue.
pub fn record(sqs_id: &str, message: &InboundMessage) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = Some(sqs_id.into());
    record.receipt_handle = Some(format!("handle-{sqs_id}"));
    record.body = Some(queue::body(message).expect("serialisable envelope"));
    record
        .attributes
        .insert("MessageGroupId".into(), message.user.as_str().to_owned());
    record.attributes.insert(
        "MessageDeduplicationId".into(),
        queue::dedup_id(&message.id, None),
    );
    record.event_source = Some("aws:sqs".into());
    record
}

/// A batch of records.
pub fn event(records: Vec<SqsMessage>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = records;
    event
}

/// The ids of the failed records of a batch response.
pub fn failed_ids(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}
