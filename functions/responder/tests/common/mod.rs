//! The responder's test bench: moto (S3), the Graph API emulator, and the SmolLM2 model
//! server behind the GPT4All rules gate, all real and on loopback.

#![allow(dead_code)]

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use remedios_shared::envelope::{Content, InboundMessage, MediaRef, Prepared, ReplyJob};
use remedios_shared::graph::{GraphClient, GraphSettings};
use remedios_shared::secrets::Secret;
use remedios_shared::store::Store;
use remedios_shared::user::{Sender, UserTag};
use remedios_template::RESPONDER_FUNCTION;
use remedios_testkit::graph::GraphEmulator;
use remedios_testkit::iam::{self, Principal};
use remedios_testkit::model_server::{Gpt4AllGate, LlmServer};
use remedios_testkit::moto::{self, Moto};
use responder::gpt4all::Gpt4AllClient;
use responder::history::Conversation;
use responder::{Behaviour, ModelSettings, Responder};
use url::Url;

pub const TOKEN: &str = "test-token";
pub const BUCKET: &str = "remedios-responder-test";
pub const PHONE_NUMBER_ID: &str = "106540352242922";
pub const PHONE: &str = "15551234567";
pub const BSUID: &str = "US.13491208655302741918";

/// The responder's principal: its role in the template, over this test bed's bucket.
pub fn principal() -> Principal {
    iam::function_principal(
        RESPONDER_FUNCTION,
        &[
            ("ReplyQueue.Arn", iam::queue_arn("remedios-reply.fifo")),
            ("Bucket.Arn", iam::bucket_arn(BUCKET)),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Everything a responder test talks to.
pub struct TestBed {
    pub moto: Moto,
    pub graph: GraphEmulator,
    pub llm: LlmServer,
    pub gate: Gpt4AllGate,
    /// The bucket as the tests see it (admin).
    pub store: Store,
    /// The bucket as the responder sees it: signed as its role.
    pub responder_store: Store,
}

impl TestBed {
    pub async fn start() -> Self {
        let (moto, llm) =
            tokio::join!(Moto::start_enforcing(vec![principal()]), LlmServer::start());
        let moto = moto.expect("moto_server must start (run scripts/bootstrap.sh)");
        let llm = llm.expect("the llama.cpp model server must start (run scripts/bootstrap.sh)");
        let sdk = moto.sdk_config().await;
        let s3 = moto::s3_client(&sdk);
        moto::create_bucket(&s3, BUCKET)
            .await
            .expect("bucket on moto");
        let graph = GraphEmulator::start(TOKEN)
            .await
            .expect("Graph API emulator");
        let gate = Gpt4AllGate::start(&llm.base_url())
            .await
            .expect("GPT4All gate");
        let responder_sdk = moto
            .sdk_config_as(&iam::principal_name(RESPONDER_FUNCTION))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        TestBed {
            responder_store: Store::new(moto::s3_client(&responder_sdk), BUCKET),
            moto,
            graph,
            llm,
            gate,
            store: Store::new(s3, BUCKET),
        }
    }

    /// The model settings the tests use: through the gate, short answers.
    pub fn model_settings(&self) -> ModelSettings {
        let mut settings = ModelSettings::new(url(&self.gate.base_url()), None);
        settings.max_tokens = 48;
        settings.temperature = 0.2;
        settings.timeout = Duration::from_secs(60);
        settings.backoff = Duration::from_millis(50);
        settings
    }

    pub fn responder(&self) -> Responder {
        self.responder_with(self.model_settings(), Behaviour::default())
    }

    pub fn responder_with(&self, model: ModelSettings, behaviour: Behaviour) -> Responder {
        let model = Gpt4AllClient::new(model, None).expect("model client");
        Responder::new(
            self.responder_store.clone(),
            self.graph_client(TOKEN),
            model,
            behaviour,
        )
    }

    /// A Graph API client of the emulator, signing with `token`.
    pub fn graph_client(&self, token: &str) -> GraphClient {
        GraphClient::new(GraphSettings {
            base_url: url(&self.graph.base_url()),
            version: "v24.0".into(),
            token: Secret::new(token),
            media_hosts: vec!["127.0.0.1".into()],
            timeout: Duration::from_secs(10),
        })
        .expect("Graph API client")
    }

    /// The SDK configuration the responder signs with (its role).
    pub async fn responder_sdk(&self) -> aws_config::SdkConfig {
        self.moto
            .sdk_config_as(&iam::principal_name(RESPONDER_FUNCTION))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The texts the Graph API emulator took, in order.
    pub fn bodies(&self) -> Vec<String> {
        self.graph
            .sent_texts()
            .into_iter()
            .map(|s| s.body)
            .collect()
    }

    /// The stored conversation of `user` (empty when there is none).
    pub async fn conversation(&self, user: &UserTag) -> Conversation {
        self.store
            .get_json::<Conversation>(&remedios_shared::keys::conversation(user))
            .await
            .expect("read the conversation")
            .map(|(c, _)| c)
            .unwrap_or_default()
    }
}

pub fn url(s: &str) -> Url {
    Url::parse(s).expect("a URL")
}

/// A message from a user with a phone number.
pub fn from_phone(id: &str, content: Content) -> InboundMessage {
    message(
        id,
        Sender {
            wa_id: Some(PHONE.into()),
            user_id: None,
            username: None,
            profile_name: Some("Ana".into()),
        },
        content,
    )
}

/// A message from a user with a username and no phone number.
pub fn from_bsuid(id: &str, content: Content) -> InboundMessage {
    message(
        id,
        Sender {
            wa_id: None,
            user_id: Some(BSUID.into()),
            username: Some("ana.remedios".into()),
            profile_name: None,
        },
        content,
    )
}

pub fn message(id: &str, sender: Sender, content: Content) -> InboundMessage {
    InboundMessage {
        v: remedios_shared::envelope::ENVELOPE_VERSION,
        phone_number_id: PHONE_NUMBER_ID.into(),
        display_phone_number: Some("15550000000".into()),
        user: remedios_testkit::meta::user_tag(sender.key().as_str()),
        sender,
        message_tag: remedios_testkit::meta::message_tag(id),
        id: id.into(),
        timestamp: 1_767_225_600,
        received_at_ms: 1_767_225_600_000,
        context: None,
        referral: None,
        group_id: None,
        origin: Default::default(),
        content,
    }
}

/// A voice note whisper heard as `heard`, in `language`.
pub fn heard_in(language: &str, id: &str, heard: &str, duration_ms: u64) -> ReplyJob {
    ReplyJob::new(
        from_phone(
            id,
            Content::Audio {
                media: MediaRef {
                    id: "1".into(),
                    mime_type: Some("audio/ogg; codecs=opus".into()),
                    sha256: None,
                },
                voice: true,
            },
        ),
        Prepared::Transcribed {
            text: heard.into(),
            language: Some(language.into()),
            transcript_key: format!("transcripts/x/{id}.json"),
            duration_ms,
        },
    )
}

pub fn text(body: &str) -> Content {
    Content::Text { body: body.into() }
}

pub fn text_job(id: &str, body: &str) -> ReplyJob {
    ReplyJob::new(from_phone(id, text(body)), Prepared::Nothing)
}

/// An SQS event with `jobs`, each with its receive count, grouped by user as the
/// transcriber sends them.
pub fn event(jobs: &[(&ReplyJob, u32)]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = jobs
        .iter()
        .enumerate()
        .map(|(i, (job, receive_count))| {
            let mut record = SqsMessage::default();
            record.message_id = Some(format!("sqs-{i}-{}", job.message.id));
            record.body = Some(remedios_shared::queue::body(job).expect("job body"));
            record
                .attributes
                .insert("MessageGroupId".into(), job.message.user.to_string());
            record
                .attributes
                .insert("ApproximateReceiveCount".into(), receive_count.to_string());
            record
        })
        .collect();
    event
}

/// The ids of the failed records of a batch response.
pub fn failed(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}
