//! The whole pipeline on one machine (`remedios up`): the AWS emulator with the queues
//! and bucket the template declares, the Graph API emulator (or the real Graph API),
//! the GPT4All host (the configured one, or a local model server), the three functions
//! under `cargo lambda watch`, a `/webhook` endpoint in front of the webhook function,
//! and the event pump between the queues and the functions.
//!
//! Every process is started in its own process group and stopped with it; dropping a
//! [`LocalStack`] kills whatever is left.
//!
//! The emulator enforces IAM as AWS does: each function runs as its own principal, whose
//! policy is exactly its role in `infra/template.yaml` ([`remedios_emulators::iam`]), so a
//! call its role does not allow fails here with `AccessDenied` as it would in a deployed
//! stack. The functions find their keys in a credentials file the stack writes, one
//! profile per function, named in `AWS_PROFILE` by the workspace's
//! `[workspace.metadata.lambda.bin.<function>.env]` (which `cargo lambda watch` applies to
//! that function alone). The event pump polls each queue as the function it feeds, as
//! Lambda's event source mapping does with the function's role; the setup, `remedios
//! chat` and `remedios dlq` use a separate admin principal.

mod build;
mod credentials;
mod env;
mod health;
mod options;
mod state;
mod supervise;

pub use build::{BuildProgress, bootstrap, check_prerequisites, default_whisper_model, target_dir};
pub use credentials::{refuse_public_secrets, webhook_secrets};
pub use health::{PartStatus, status_table};
pub use options::{
    DEFAULT_BASE_PORT, NOT_LOCAL, Options, Ports, SET_BY_STACK, STACK_VARS, function_settings,
    passes,
};
pub use state::{StackInfo, StateError};
pub use supervise::{Processes, Restart, restart_note};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicI32;
use std::time::Duration;

use thiserror::Error;

use crate::pump::{EventSource, HttpInvoker, Pump, PumpHandle, Settings};
use crate::secrets::{SecretError, put_secret, random_key};
use remedios_emulators::graph::GraphEmulator;
use remedios_emulators::iam;
use remedios_emulators::link::Link;
use remedios_emulators::meta;
use remedios_emulators::model_server::LlmServer;
use remedios_emulators::moto::{self, Moto, MotoError};
use remedios_emulators::paths;

use build::build_functions;
use credentials::{function_principals, secret_values, write_credentials};
use env::function_env;
use supervise::{Functions, spawn_webhook_proxy, supervise};

/// The local stack's name: queues `remedios-local-inbound.fifo`, ...
pub const STACK_NAME: &str = "remedios-local";
/// The access token the Graph API emulator accepts.
pub const EMULATOR_TOKEN: &str = "local-access-token";
/// The app secret and verify token of the local stack when none are configured.
pub const LOCAL_APP_SECRET: &str = "local-app-secret";
pub const LOCAL_VERIFY_TOKEN: &str = "local-verify-token";
/// Where `remedios up` records what it started, for `remedios chat`.
pub const STATE_FILE: &str = "local/stack.json";

/// Why the stack could not start.
#[derive(Debug, Error)]
pub enum StackError {
    #[error("{0}")]
    Prerequisite(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the AWS emulator: {0}")]
    Moto(#[from] MotoError),
    #[error("the Graph API emulator could not listen on {addr}: {source}")]
    Graph {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the model server: {0}")]
    Model(String),
    #[error("KNOWLEDGE_DIR: {0}")]
    Knowledge(String),
    #[error("building the functions failed (see {log}): {detail}")]
    Build { log: PathBuf, detail: String },
    #[error("could not start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{part} did not become healthy within {limit:?}: {detail} (log: {log})")]
    NotReady {
        part: String,
        limit: Duration,
        detail: String,
        log: PathBuf,
    },
    #[error("the template: {0}")]
    Template(String),
}

/// The model server the stack uses.
enum ModelHost {
    /// The configured GPT4All host.
    External,
    /// Our model server.
    Local(LlmServer),
}

/// The running stack.
pub struct LocalStack {
    info: StackInfo,
    moto: Moto,
    aws_link: Option<Link>,
    graph: Option<GraphEmulator>,
    model: ModelHost,
    /// `cargo lambda watch`, shared with the task that revives crashed functions.
    functions: Arc<tokio::sync::Mutex<Functions>>,
    /// The watcher's process group (it changes when the functions are started again).
    functions_pgid: Arc<AtomicI32>,
    supervisor: Option<tokio::task::JoinHandle<()>>,
    proxy: tokio::task::JoinHandle<()>,
    pump: PumpHandle,
    pump_health: Pump<HttpInvoker>,
    http: reqwest::Client,
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        self.proxy.abort();
        if let Some(supervisor) = &self.supervisor {
            supervisor.abort();
        }
    }
}

/// The three functions, by binary name.
pub const FUNCTIONS: [&str; 3] = ["webhook", "transcriber", "responder"];

impl LocalStack {
    /// Starts everything and waits until every part is healthy. `progress` is told
    /// what is happening.
    pub async fn up(options: Options, progress: impl Fn(&str)) -> Result<Self, StackError> {
        // Before anything starts: real WhatsApp never runs on the public local secrets.
        refuse_public_secrets(&options)?;
        if let Err(missing) = check_prerequisites() {
            return Err(StackError::Prerequisite(format!(
                "missing: {}. Run scripts/bootstrap.sh (or `remedios up` without --no-install)",
                missing.join(", ")
            )));
        }
        let ports = options.ports;
        let resources = local_resources(&options)?;

        progress(
            "starting the AWS emulator (moto) with the template's queues and bucket, IAM enforced",
        );
        let bucket = format!("{STACK_NAME}-bucket");
        let principals = function_principals(&resources, &bucket)?;
        let moto = Moto::start_enforcing_on(ports.moto, principals).await?;
        let sdk = moto.sdk_config().await;
        let aws_link = if options.aws_link {
            let target = SocketAddr::from(([127, 0, 0, 1], moto.port()));
            Some(
                Link::start(target)
                    .await
                    .map_err(|source| StackError::Spawn {
                        what: "the link to the AWS emulator".into(),
                        source,
                    })?,
            )
        } else {
            None
        };
        let aws_url = aws_link
            .as_ref()
            .map_or_else(|| moto.endpoint().to_owned(), Link::url);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let s3 = moto::s3_client(&sdk);
        let inbound = moto::create_queues(&sqs, &resources.inbound).await?;
        let reply = moto::create_queues(&sqs, &resources.reply).await?;
        moto::create_bucket(&s3, &bucket).await?;
        if let Some(dir) = options.var("KNOWLEDGE_DIR") {
            upload_knowledge(&s3, &bucket, Path::new(dir), &progress).await?;
        }

        let graph = if options.real_whatsapp() {
            progress("WhatsApp: using the real Graph API (WHATSAPP_ACCESS_TOKEN is set)");
            None
        } else {
            progress("starting the Graph API emulator");
            let addr = SocketAddr::from(([127, 0, 0, 1], ports.graph));
            Some(
                GraphEmulator::start_on(addr, EMULATOR_TOKEN)
                    .await
                    .map_err(|source| StackError::Graph { addr, source })?,
            )
        };

        let (model, model_url) = start_model(&options, &progress).await?;

        let (app_secret, verify_token) =
            webhook_secrets(&options, &paths::cache_dir().join("local"))?;
        let info = StackInfo {
            webhook_url: format!("http://127.0.0.1:{}/webhook", ports.webhook),
            functions_url: format!("http://127.0.0.1:{}", ports.functions),
            moto_url: aws_url.clone(),
            graph_emulator_url: graph.as_ref().map(GraphEmulator::base_url),
            model_url: model_url.clone(),
            model_local: matches!(model, ModelHost::Local(_)),
            model_name: match &model {
                ModelHost::Local(server) => Some(server.model().to_owned()),
                ModelHost::External => None,
            },
            bucket,
            inbound: inbound.clone(),
            reply: reply.clone(),
            app_secret,
            verify_token,
            user_tag_key: match options.var("USER_TAG_KEY") {
                Some(key) => key.to_owned(),
                None => random_key()?,
            },
            phone_number_id: options
                .var("WHATSAPP_PHONE_NUMBER_ID")
                .unwrap_or(meta::PHONE_NUMBER_ID)
                .to_owned(),
            log_dir: options.log_dir.clone(),
            admin_key: moto.access_key(iam::ADMIN)?.clone(),
        };

        // Secrets travel as in AWS: SecureString parameters the functions read through
        // their `_PARAM` variables, named as the template names them.
        let secrets = secret_values(&options, &info);
        let ssm = aws_sdk_ssm::Client::new(&sdk);
        for (var, parameter) in &resources.secret_parameters {
            if let Some(value) = secrets.get(var.as_str()) {
                put_secret(&ssm, parameter, value, None).await?;
            }
        }
        let credentials = options.log_dir.join("aws-credentials");
        write_credentials(&moto, &credentials)?;
        let env = function_env(&options, &info, &resources, &credentials);
        let first_build = !FUNCTIONS.iter().all(|f| {
            target_dir()
                .join(if options.release { "release" } else { "debug" })
                .join(f)
                .is_file()
        });
        progress(&format!(
            "building the functions (log: {}){}",
            options.log_dir.join("build.log").display(),
            if first_build {
                "; the first build compiles about 120 crates, whisper.cpp among them: \
                 about 2½ minutes on 2 cores; later ones take seconds"
            } else {
                ""
            }
        ));
        build_functions(&options, &progress).await?;

        progress("starting the functions under `cargo lambda watch`");
        let at_once = |consumer: &remedios_template::Consumer| {
            if options.concurrent {
                consumer.concurrency()
            } else {
                1
            }
        };
        let concurrency = at_once(&resources.transcriber).max(at_once(&resources.responder));
        let started = Functions::start(&options, env, concurrency, &info.functions_url)?;
        let functions_pgid = started.pgid();
        let functions = Arc::new(tokio::sync::Mutex::new(started));

        let proxy =
            spawn_webhook_proxy(ports.webhook, &info.functions_url, options.webhook_limits).await?;

        let (pump, handle) = start_pump(
            &moto,
            &aws_url,
            &info,
            &[
                (
                    "transcriber",
                    &resources.transcriber,
                    &inbound,
                    at_once(&resources.transcriber),
                ),
                (
                    "responder",
                    &resources.responder,
                    &reply,
                    at_once(&resources.responder),
                ),
            ],
        )
        .await?;

        let mut stack = LocalStack {
            info,
            moto,
            aws_link,
            graph,
            model,
            functions,
            functions_pgid,
            supervisor: None,
            proxy,
            pump: handle,
            pump_health: pump,
            http: reqwest::Client::new(),
        };
        progress("waiting for every part to answer");
        stack.wait_healthy(options.ready_timeout).await?;
        if options.revive_crashed {
            stack.supervisor = Some(tokio::spawn(supervise(stack.functions.clone())));
        }
        if options.record_state
            && let Err(e) = stack.info.save()
        {
            tracing::warn!(error = %e, "could not record the stack for `remedios chat`");
        }
        Ok(stack)
    }

    pub fn info(&self) -> &StackInfo {
        &self.info
    }

    /// The cuttable path to the AWS emulator, when [`Options::aws_link`] asked for it.
    pub fn aws_link(&self) -> Option<&Link> {
        self.aws_link.as_ref()
    }

    /// What the event pump does from now on: one [`crate::pump::Batch`] per invocation.
    pub fn pump_events(&self) -> tokio::sync::broadcast::Receiver<crate::pump::Batch> {
        self.pump_health.subscribe()
    }

    /// The Graph API emulator (none when the real Graph API is configured).
    pub fn graph_emulator(&self) -> Option<&GraphEmulator> {
        self.graph.as_ref()
    }

    /// Stops everything, leaving no process behind.
    pub async fn shutdown(mut self) {
        self.pump.stop();
        self.proxy.abort();
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.abort();
        }
        self.functions.lock().await.stop().await;
        // The model server's process group is killed when it is dropped.
        self.model = ModelHost::External;
        self.moto.stop().await;
        self.graph = None;
        if StackInfo::load().is_ok_and(|recorded| recorded == self.info) {
            let _ = std::fs::remove_file(StackInfo::path());
        }
    }
}

/// The template's resources for the local stack, with the tests' shorter visibility
/// timeouts when [`Options::visibility_timeout`] asks for them.
fn local_resources(options: &Options) -> Result<remedios_template::LocalResources, StackError> {
    let mut resources = remedios_template::local_resources(STACK_NAME)
        .map_err(|e| StackError::Template(e.to_string()))?;
    if let Some(visibility) = options.visibility_timeout {
        for queue in [&mut resources.inbound, &mut resources.reply] {
            queue.spec.visibility_timeout = visibility;
        }
        for consumer in [&mut resources.transcriber, &mut resources.responder] {
            consumer.timeout = consumer.timeout.min(visibility);
        }
    }
    Ok(resources)
}

/// Uploads `dir` to the bucket's `knowledge/` and indexes it, before the functions start.
async fn upload_knowledge(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    dir: &Path,
    progress: &impl Fn(&str),
) -> Result<(), StackError> {
    progress(&format!(
        "knowledge: uploading {} and indexing it",
        dir.display()
    ));
    let store = remedios_shared::store::Store::new(s3.clone(), bucket);
    let synced = crate::knowledge::sync_folder(&store, dir)
        .await
        .map_err(|e| StackError::Knowledge(e.to_string()))?;
    let built = crate::knowledge::build(&store)
        .await
        .map_err(|e| StackError::Knowledge(e.to_string()))?;
    progress(&format!(
        "knowledge: {} passages from {} files (set KNOWLEDGE=on to answer from them)",
        built.passages,
        synced.uploaded.len()
    ));
    Ok(())
}

/// The configured GPT4All host, or our own model server when none is configured.
async fn start_model(
    options: &Options,
    progress: &impl Fn(&str),
) -> Result<(ModelHost, String), StackError> {
    Ok(match options.var("GPT4ALL_URL") {
        Some(url) => {
            progress(&format!("GPT4All host: {url}"));
            (ModelHost::External, url.to_owned())
        }
        None => {
            progress("starting the local model server (llama.cpp with SmolLM2-135M)");
            let model = remedios_emulators::model_server::smollm2_path()
                .map_err(|e| StackError::Model(e.to_string()))?;
            let server = LlmServer::start_logged(
                &model,
                options.ports.model,
                &options.log_dir.join("model-server.log"),
            )
            .await
            .map_err(|e| StackError::Model(e.to_string()))?;
            let url = server.base_url();
            (ModelHost::Local(server), url)
        }
    })
}

/// The event pump between the queues and the functions. It reaches the queues the way
/// the functions do, each queue polled as the function it feeds (Lambda's event source
/// mapping uses the function's role); `sources` are each function, its event source, its queue, and how
/// many of its invocations may run at once.
async fn start_pump(
    moto: &Moto,
    aws_url: &str,
    info: &StackInfo,
    sources: &[(&str, &remedios_template::Consumer, &moto::QueuePair, usize)],
) -> Result<(Pump<HttpInvoker>, PumpHandle), StackError> {
    let pump = Pump::new(
        aws_sdk_sqs::Client::new(&moto::sdk_config_with(aws_url, &info.admin_key).await),
        HttpInvoker::new(&info.functions_url),
        Settings::default(),
    );
    let mut started = Vec::new();
    for (function, consumer, queue, concurrency) in sources {
        let key = moto.access_key(function)?;
        started.push(EventSource {
            function: (*function).to_owned(),
            queue_url: queue.url.clone(),
            queue_arn: queue.arn.clone(),
            batch_size: consumer.batch_size as i32,
            timeout: consumer.timeout,
            sqs: Some(aws_sdk_sqs::Client::new(
                &moto::sdk_config_with(aws_url, key).await,
            )),
            concurrency: *concurrency,
        });
    }
    let handle = pump.start(started);
    Ok((pump, handle))
}
