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

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::process::Command;

use crate::pump::{HttpInvoker, Pump, PumpHandle, Settings, Source};
use crate::secrets::{SecretError, put_secret, random_key};
use crate::webhook_proxy;
use remedios_emulators::meta;

use remedios_emulators::child::GroupChild;
use remedios_emulators::graph::{EmulatorClient, GraphEmulator};
use remedios_emulators::iam::{self, AccessKey, Principal};
use remedios_emulators::link::Link;
use remedios_emulators::model_server::LlmServer;
use remedios_emulators::moto::{self, Moto, MotoError, QueuePair};
use remedios_emulators::paths;
use remedios_emulators::ports::free_port;

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

/// The ports the stack listens on (all on 127.0.0.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    /// `/webhook`, the URL Meta (through ngrok) and the chat call.
    pub webhook: u16,
    /// `cargo lambda watch`: invoke endpoint and function URLs.
    pub functions: u16,
    pub moto: u16,
    pub graph: u16,
    pub model: u16,
}

impl Ports {
    /// Five consecutive ports from `base`.
    pub fn from_base(base: u16) -> Self {
        Ports {
            webhook: base,
            functions: base + 1,
            moto: base + 2,
            graph: base + 3,
            model: base + 4,
        }
    }

    /// Free ports chosen by the OS (tests).
    pub fn free() -> std::io::Result<Self> {
        Ok(Ports {
            webhook: free_port()?,
            functions: free_port()?,
            moto: free_port()?,
            graph: free_port()?,
            model: free_port()?,
        })
    }
}

/// The default first port: `REMEDIOS_PORT` overrides it.
pub const DEFAULT_BASE_PORT: u16 = 8780;

/// How to start the stack.
#[derive(Debug, Clone)]
pub struct Options {
    pub ports: Ports,
    /// The settings the user configured (GPT4All host, WhatsApp credentials, whisper
    /// model, ...): variables passed to the functions as they are, over our defaults.
    pub vars: BTreeMap<String, String>,
    /// Build the functions in release mode.
    pub release: bool,
    /// Rebuild and restart a function when its code changes.
    pub hot_reload: bool,
    /// Where the children's logs go.
    pub log_dir: PathBuf,
    /// How long the first start (compilation included) may take.
    pub ready_timeout: Duration,
    /// Record the stack in [`STATE_FILE`] for `remedios chat` (off in tests, so a
    /// test never overwrites the record of a stack a developer is running).
    pub record_state: bool,
    /// The `/webhook` endpoint's timeouts and bounds for slow clients.
    pub webhook_limits: webhook_proxy::Limits,
    /// Put a cuttable [`Link`] between the AWS emulator and its clients (the functions
    /// and the event pump), for tests that give them an outage ([`LocalStack::aws_link`]).
    pub aws_link: bool,
    /// Shorter visibility timeouts than the template's for both queues (the functions'
    /// timeouts are capped to them), so tests see failed messages come back in seconds
    /// rather than minutes.
    pub visibility_timeout: Option<Duration>,
    /// Start the functions again when one of their processes dies, as Lambda does
    /// (`cargo lambda watch` leaves a dead function dead). On for `remedios up`; tests
    /// that kill functions on purpose and restart them themselves leave it off.
    pub revive_crashed: bool,
    /// Run as many invocations of a function at once as its event source's
    /// `MaximumConcurrency` allows (transcriber 5, responder 2), as Lambda does; off,
    /// one at a time per function. Off by default: the local stack cannot stop an
    /// invocation at its timeout as Lambda does (`cargo lambda watch` lets it run on), so
    /// with several at once a timed-out invocation can still be running when its message
    /// comes back to another one.
    pub concurrent: bool,
}

/// Variables the stack reads from its own environment and hands to the functions.
pub const PASSED_VARS: &[&str] = &[
    "GPT4ALL_URL",
    "GPT4ALL_MODEL",
    "GPT4ALL_API_KEY",
    "GPT4ALL_MAX_TOKENS",
    "GPT4ALL_CONTEXT_TOKENS",
    "GPT4ALL_TIMEOUT_SECONDS",
    "GPT4ALL_TEMPERATURE",
    "SYSTEM_PROMPT",
    "ECHO_TRANSCRIPT",
    "REPLY_MODE",
    "SUMMARY",
    "SUMMARY_MIN_SECONDS",
    "KNOWLEDGE",
    "KNOWLEDGE_UNCOVERED",
    "KNOWLEDGE_PASSAGES",
    "KNOWLEDGE_MAX_CHARS",
    // The stack's own: a folder uploaded to knowledge/ and indexed before the functions start.
    "KNOWLEDGE_DIR",
    "HISTORY_MAX_TURNS",
    "HISTORY_MAX_CHARS",
    "GPT4ALL_TOP_P",
    "GPT4ALL_RETRIES",
    "USER_TAG_KEY",
    "WHATSAPP_ACCESS_TOKEN",
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_VERIFY_TOKEN",
    "WHATSAPP_PHONE_NUMBER_ID",
    "GRAPH_API_VERSION",
    "ALLOWED_SENDERS",
    "NORMALIZE_TEST_RECIPIENTS",
    "WHISPER_MODEL_PATH",
    "WHISPER_LANGUAGE",
    "WHISPER_THREADS",
    "AUDIO_MAX_SECONDS",
    "MEDIA_MAX_BYTES",
    "WEBHOOK_MAX_BODY_BYTES",
    "SPEECH_LANES",
    "LIMIT_MESSAGES_PER_MINUTE",
    "LIMIT_MESSAGES_PER_DAY",
    "LIMIT_AUDIO_MINUTES_PER_DAY",
    "LIMITS_EXEMPT",
    "RUST_LOG",
    "LOG_FORMAT",
];

/// Families of variables the stack passes on whole: the responder's reworded fixed texts
/// (`TEXT_<NAME>_<LANG>`).
pub const PASSED_PREFIXES: &[&str] = &["TEXT_"];

/// Variables the functions read that the stack sets itself, from what it started.
pub const SET_BY_STACK: &[&str] = &[
    "BUCKET_NAME",
    "INBOUND_QUEUE_URL",
    "REPLY_QUEUE_URL",
    "INBOUND_MAX_RECEIVE_COUNT",
    "REPLY_MAX_RECEIVE_COUNT",
    "INBOUND_MAX_CONCURRENCY",
    "GRAPH_API_BASE_URL",
    "GRAPH_MEDIA_HOSTS",
];

/// Variables a deployed stack has that make no sense on one machine: the model is read
/// from disk (`WHISPER_MODEL_PATH`), not fetched from the bucket.
pub const NOT_LOCAL: &[&str] = &["WHISPER_MODEL_S3_KEY"];

impl Options {
    /// From the process environment: `REMEDIOS_PORT`, `REMEDIOS_RELEASE`, and the
    /// variables of [`PASSED_VARS`] and [`PASSED_PREFIXES`].
    pub fn from_env() -> Self {
        let base = std::env::var("REMEDIOS_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(DEFAULT_BASE_PORT);
        let vars = std::env::vars()
            .filter(|(name, value)| {
                (PASSED_VARS.contains(&name.as_str())
                    || PASSED_PREFIXES.iter().any(|p| name.starts_with(p)))
                    && !value.trim().is_empty()
            })
            .collect();
        Options {
            ports: Ports::from_base(base),
            vars,
            release: std::env::var("REMEDIOS_RELEASE").is_ok_and(|v| v == "1" || v == "true"),
            hot_reload: true,
            log_dir: paths::cache_dir().join("local").join("logs"),
            ready_timeout: Duration::from_secs(900),
            record_state: true,
            webhook_limits: webhook_proxy::Limits::default(),
            aws_link: false,
            visibility_timeout: None,
            revive_crashed: true,
            concurrent: false,
        }
    }

    /// A stack for tests: free ports, logs in `log_dir`, no hot reload, no state file,
    /// no settings from the environment (add them to `vars`).
    pub fn isolated(log_dir: &Path) -> std::io::Result<Self> {
        Ok(Options {
            ports: Ports::free()?,
            vars: BTreeMap::new(),
            release: false,
            hot_reload: false,
            log_dir: log_dir.to_owned(),
            ready_timeout: Duration::from_secs(900),
            record_state: false,
            webhook_limits: webhook_proxy::Limits::default(),
            aws_link: false,
            visibility_timeout: None,
            revive_crashed: false,
            concurrent: false,
        })
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Whether real WhatsApp credentials are configured (then the real Graph API is used).
    pub fn real_whatsapp(&self) -> bool {
        self.var("WHATSAPP_ACCESS_TOKEN").is_some()
    }
}

/// What is running where: written to [`STATE_FILE`] for `remedios chat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackInfo {
    pub webhook_url: String,
    pub functions_url: String,
    pub moto_url: String,
    /// The Graph API emulator, `None` when the real Graph API is used.
    pub graph_emulator_url: Option<String>,
    pub model_url: String,
    /// Whether the model server is ours (else the configured GPT4All host).
    pub model_local: bool,
    /// The model our server lists (`GPT4ALL_MODEL` for the responder).
    pub model_name: Option<String>,
    pub bucket: String,
    pub inbound: QueuePair,
    pub reply: QueuePair,
    pub app_secret: String,
    pub verify_token: String,
    /// The key of this stack's user tags (`USER_TAG_KEY`: the configured one, else a
    /// random one per `remedios up`).
    pub user_tag_key: String,
    pub phone_number_id: String,
    pub log_dir: PathBuf,
    /// The emulator's admin key: setup, `remedios chat` and `remedios dlq` use it; no
    /// function is given it.
    pub admin_key: AccessKey,
}

impl StackInfo {
    /// The state file of the running stack.
    pub fn path() -> PathBuf {
        paths::cache_dir().join(STATE_FILE)
    }

    /// Reads what `remedios up` recorded.
    pub fn load() -> Result<Self, String> {
        let path = Self::path();
        let raw = std::fs::read_to_string(&path).map_err(|_| {
            format!(
                "no local stack is recorded at {}: start it with `remedios up`",
                path.display()
            )
        })?;
        serde_json::from_str(&raw).map_err(|e| format!("{} is unreadable: {e}", path.display()))
    }

    /// An SDK configuration for the emulator, signed as its admin.
    pub async fn admin_sdk(&self) -> aws_config::SdkConfig {
        moto::sdk_config_with(&self.moto_url, &self.admin_key).await
    }

    fn save(&self) -> std::io::Result<()> {
        let path = Self::path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // It holds the app secret, the tag key and the emulator's admin key.
        private_file(&path, &serde_json::to_string_pretty(self)?)
    }
}

/// One row of the status table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartStatus {
    pub part: String,
    pub url: String,
    pub healthy: bool,
    pub detail: String,
}

/// Renders the status table.
pub fn status_table(rows: &[PartStatus]) -> String {
    let w0 = rows.iter().map(|r| r.part.len()).max().unwrap_or(4).max(4);
    let w1 = rows.iter().map(|r| r.url.len()).max().unwrap_or(3).max(3);
    let mut out = format!("{:<w0$}  {:<w1$}  HEALTHY\n", "PART", "URL");
    for r in rows {
        let mark = if r.healthy { "yes" } else { "NO" };
        out.push_str(&format!("{:<w0$}  {:<w1$}  {mark}", r.part, r.url));
        if !r.detail.is_empty() {
            out.push_str(&format!("  ({})", r.detail));
        }
        out.push('\n');
    }
    out
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

/// Checks what the stack needs; the error says how to get it.
pub fn check_prerequisites() -> Result<(), Vec<String>> {
    let mut missing = Vec::new();
    for exe in ["moto_server", "cargo-lambda", "python"] {
        let path = paths::venv_bin(exe);
        if !path.exists() {
            missing.push(format!("{} (from the project venv)", path.display()));
        }
    }
    let model = default_whisper_model();
    if !model.exists() {
        missing.push(format!("the whisper model {}", model.display()));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// The whisper model the local transcriber uses unless `WHISPER_MODEL_PATH` is set.
pub fn default_whisper_model() -> PathBuf {
    paths::models_dir().join("ggml-base-q8_0.bin")
}

/// Runs `scripts/bootstrap.sh --run` (idempotent): only what running the stack needs, and
/// no local model server when `GPT4ALL_URL` names your own host. Its output shows as it goes.
pub async fn bootstrap() -> Result<(), StackError> {
    let script = paths::workspace_root().join("scripts").join("bootstrap.sh");
    let status = Command::new(&script)
        .arg("--run")
        .current_dir(paths::workspace_root())
        .status()
        .await
        .map_err(|source| StackError::Spawn {
            what: script.display().to_string(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(StackError::Prerequisite(format!(
            "{} failed ({status}); fix what it reports and run it again",
            script.display()
        )))
    }
}

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
            progress(&format!("knowledge: uploading {dir} and indexing it"));
            let store = remedios_shared::store::Store::new(s3.clone(), &bucket);
            let synced = crate::knowledge::sync_folder(&store, Path::new(dir))
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

        let (model, model_url) = match options.var("GPT4ALL_URL") {
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
                    ports.model,
                    &options.log_dir.join("model-server.log"),
                )
                .await
                .map_err(|e| StackError::Model(e.to_string()))?;
                let url = server.base_url();
                (ModelHost::Local(server), url)
            }
        };

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
                put_secret(&ssm, parameter, value).await?;
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
        let watch = spawn_functions(&options, &env, concurrency)?;
        let functions_pgid = Arc::new(AtomicI32::new(watch.pgid()));
        let functions = Arc::new(tokio::sync::Mutex::new(Functions {
            watch,
            options: options.clone(),
            env,
            concurrency,
            functions_url: info.functions_url.clone(),
            pgid: functions_pgid.clone(),
            missing: BTreeMap::new(),
            restarts: Vec::new(),
        }));

        let proxy =
            spawn_webhook_proxy(ports.webhook, &info.functions_url, options.webhook_limits).await?;

        // The event pump reaches the queues the way the functions do, each queue polled
        // as the function it feeds (Lambda's event source mapping uses the function's
        // role).
        let poller = |function: &str| {
            let key = moto.access_key(function).cloned();
            let aws_url = aws_url.clone();
            async move {
                let key = key?;
                Ok::<_, MotoError>(aws_sdk_sqs::Client::new(
                    &moto::sdk_config_with(&aws_url, &key).await,
                ))
            }
        };
        let pump = Pump::new(
            aws_sdk_sqs::Client::new(&moto::sdk_config_with(&aws_url, &info.admin_key).await),
            HttpInvoker::new(&info.functions_url),
            Settings::default(),
        );
        let handle = pump.start(vec![
            Source {
                function: "transcriber".into(),
                queue_url: inbound.url.clone(),
                queue_arn: inbound.arn.clone(),
                batch_size: resources.transcriber.batch_size as i32,
                timeout: resources.transcriber.timeout,
                sqs: Some(poller("transcriber").await?),
                concurrency: at_once(&resources.transcriber),
            },
            Source {
                function: "responder".into(),
                queue_url: reply.url.clone(),
                queue_arn: reply.arn.clone(),
                batch_size: resources.responder.batch_size as i32,
                timeout: resources.responder.timeout,
                sqs: Some(poller("responder").await?),
                concurrency: at_once(&resources.responder),
            },
        ]);

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

    /// The running processes of `function` (its binary name) under `cargo lambda watch`.
    pub fn function_pids(&self, function: &str) -> Vec<u32> {
        let runtime_api = format!("{}/", self.info.functions_url);
        remedios_emulators::child::processes_with_env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim_end() == function)
            })
            .collect()
    }

    /// The process groups and ports the stack started (to check none is left).
    pub fn processes(&self) -> Processes {
        let groups = vec![self.functions_pgid.load(Ordering::SeqCst)];
        let runtime_api = format!("{}/", self.info.functions_url);
        let mut ports = vec![self.moto.port()];
        if let Ok(url) = url::Url::parse(&self.info.functions_url) {
            ports.extend(url.port());
        }
        if self.info.model_local
            && let Ok(url) = url::Url::parse(&self.info.model_url)
        {
            ports.extend(url.port());
        }
        Processes {
            groups,
            ports,
            runtime_api,
        }
    }

    async fn wait_healthy(&self, limit: Duration) -> Result<(), StackError> {
        let started = Instant::now();
        loop {
            let rows = self.status().await;
            if rows.iter().all(|r| r.healthy) {
                return Ok(());
            }
            if started.elapsed() > limit {
                let bad = rows.iter().find(|r| !r.healthy).cloned();
                let bad = bad.unwrap_or(PartStatus {
                    part: "stack".into(),
                    url: String::new(),
                    healthy: false,
                    detail: String::new(),
                });
                return Err(StackError::NotReady {
                    part: bad.part,
                    limit,
                    detail: bad.detail,
                    log: self.info.log_dir.join("functions.log"),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Checks every part.
    pub async fn status(&self) -> Vec<PartStatus> {
        let mut rows = Vec::new();
        let moto_ok = self
            .http
            .get(format!("{}/moto-api/", self.info.moto_url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok();
        rows.push(PartStatus {
            part: "AWS emulator (moto: SQS, S3)".into(),
            url: self.info.moto_url.clone(),
            healthy: moto_ok,
            detail: format!(
                "bucket {}, queues {}, {}",
                self.info.bucket,
                queue_name(&self.info.inbound.url),
                queue_name(&self.info.reply.url)
            ),
        });
        match &self.info.graph_emulator_url {
            Some(url) => rows.push(PartStatus {
                part: "WhatsApp (Graph API emulator)".into(),
                url: url.clone(),
                healthy: EmulatorClient::new(url).healthy().await,
                detail: String::new(),
            }),
            None => rows.push(PartStatus {
                part: "WhatsApp (real Graph API)".into(),
                url: "https://graph.facebook.com".into(),
                healthy: true,
                detail: "credentials configured; not probed".into(),
            }),
        }
        let model_ok = self
            .http
            .get(format!(
                "{}/models",
                self.info.model_url.trim_end_matches('/')
            ))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        rows.push(PartStatus {
            part: if self.info.model_local {
                "GPT4All host (local llama.cpp, SmolLM2)".into()
            } else {
                "GPT4All host (configured)".into()
            },
            url: self.info.model_url.clone(),
            healthy: model_ok,
            detail: String::new(),
        });
        let verify = format!(
            "{}?hub.mode=subscribe&hub.verify_token={}&hub.challenge=ready",
            self.info.webhook_url, self.info.verify_token
        );
        let webhook = self
            .http
            .get(&verify)
            .timeout(Duration::from_secs(60))
            .send()
            .await;
        let (ok, detail) = match webhook {
            Ok(r) if r.status().is_success() => (true, "function URL /lambda-url/webhook/".into()),
            Ok(r) => (false, format!("answered {}", r.status())),
            Err(e) => (false, e.to_string()),
        };
        rows.push(PartStatus {
            part: "webhook function".into(),
            url: self.info.webhook_url.clone(),
            healthy: ok,
            detail,
        });
        let invoker = HttpInvoker::new(&self.info.functions_url);
        for function in ["transcriber", "responder"] {
            let (ok, detail) = match probe_sqs_function(&invoker, function).await {
                Ok(()) => (true, String::new()),
                Err(e) => (false, e),
            };
            rows.push(PartStatus {
                part: format!("{function} function"),
                url: invoker.url(function),
                healthy: ok,
                detail,
            });
        }
        let restarts = self.restarts().await;
        for row in &mut rows {
            let Some(function) = row.part.strip_suffix(" function") else {
                continue;
            };
            if let Some(note) = restart_note(&restarts, function) {
                if !row.detail.is_empty() {
                    row.detail.push_str("; ");
                }
                row.detail.push_str(&note);
            }
        }
        let health = self.pump_health.health();
        let errors: Vec<String> = health
            .iter()
            .filter_map(|(f, h)| h.last_error.as_ref().map(|e| format!("{f}: {e}")))
            .collect();
        let batches: u64 = health.values().map(|h| h.batches).sum();
        rows.push(PartStatus {
            part: "event pump (SQS -> functions)".into(),
            url: format!(
                "{} -> transcriber, {} -> responder",
                queue_name(&self.info.inbound.url),
                queue_name(&self.info.reply.url)
            ),
            healthy: errors.is_empty() && !self.pump_finished(),
            detail: if errors.is_empty() {
                format!("{batches} batches so far")
            } else {
                errors.join("; ")
            },
        });
        rows
    }

    fn pump_finished(&self) -> bool {
        false
    }

    /// Whether the functions' watcher is still running (it is the part most likely to
    /// stop on its own, on a build error it cannot recover from). `None` while the
    /// functions are being started again.
    pub fn functions_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.functions.try_lock().ok()?.watch.exited()
    }

    /// Each time the functions were started again because one of them died, oldest
    /// first (only with [`Options::revive_crashed`]).
    pub async fn restarts(&self) -> Vec<Restart> {
        self.functions.lock().await.restarts.clone()
    }

    /// Starts the functions again (a new `cargo lambda watch`), as Lambda gives a fresh
    /// execution environment to the next invocation after one crashed: `cargo lambda
    /// watch` does not restart a function process that died. Invocations in flight fail,
    /// so their batches come back after the visibility timeout. Returns once the three
    /// functions answer.
    pub async fn restart_functions(&mut self) -> Result<(), StackError> {
        self.functions.lock().await.restart().await
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

/// How often the supervisor looks for function processes that died.
const SUPERVISE_EVERY: Duration = Duration::from_secs(1);
/// A function missing this many looks in a row has died (one look can fall between
/// `cargo lambda watch` stopping a function for a rebuild and starting it again).
const MISSING_LOOKS: u32 = 2;
/// More restarts than this within [`RESTART_WINDOW`] and the supervisor gives up: a
/// function that dies at every start needs its log read, not another restart.
const MAX_RESTARTS: usize = 3;
const RESTART_WINDOW: Duration = Duration::from_secs(300);

/// One start of the functions after a function's process died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// The functions found dead.
    pub crashed: Vec<String>,
    pub at: SystemTime,
    /// Whether they answer again, or why not (then the supervisor stops).
    pub outcome: Result<(), String>,
}

/// What the status says of `function`'s crashes: `died 2× and was started again (last
/// 40 s ago)`, or why it was not.
pub fn restart_note(restarts: &[Restart], function: &str) -> Option<String> {
    let its: Vec<&Restart> = restarts
        .iter()
        .filter(|r| r.crashed.iter().any(|c| c == function))
        .collect();
    let last = its.last()?;
    let ago = last.at.elapsed().unwrap_or_default().as_secs();
    Some(match &last.outcome {
        Ok(()) => format!(
            "died {}× and was started again (last {ago} s ago)",
            its.len()
        ),
        Err(why) => format!("died and was not started again: {why}"),
    })
}

/// `cargo lambda watch` and what starting it again takes.
struct Functions {
    watch: GroupChild,
    options: Options,
    env: BTreeMap<String, String>,
    /// Instances of one function at once, as the busiest event source may run them.
    concurrency: usize,
    functions_url: String,
    pgid: Arc<AtomicI32>,
    /// Per function seen running since the watcher started: how many looks in a row
    /// found no process (a function starts at its first invocation).
    missing: BTreeMap<&'static str, u32>,
    restarts: Vec<Restart>,
}

impl Functions {
    /// Stops `cargo lambda watch` and the function processes it started (they run in
    /// process groups of their own, so stopping its group leaves them).
    async fn stop(&mut self) {
        self.watch.stop(Duration::from_secs(5)).await;
        let runtime_api = format!("{}/", self.functions_url);
        for pid in
            remedios_emulators::child::processes_with_env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
        {
            remedios_emulators::child::kill(pid);
        }
    }

    async fn restart(&mut self) -> Result<(), StackError> {
        self.stop().await;
        let port = self.options.ports.functions;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.watch = spawn_functions(&self.options, &self.env, self.concurrency)?;
        self.pgid.store(self.watch.pgid(), Ordering::SeqCst);
        self.missing.clear();
        let limit = self.options.ready_timeout;
        let started = Instant::now();
        let invoker = HttpInvoker::new(&self.functions_url);
        for function in ["transcriber", "responder"] {
            loop {
                match probe_sqs_function(&invoker, function).await {
                    Ok(()) => break,
                    Err(detail) if started.elapsed() > limit => {
                        return Err(StackError::NotReady {
                            part: format!("{function} function (restarted)"),
                            limit,
                            detail,
                            log: self.options.log_dir.join("functions.log"),
                        });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        }
        Ok(())
    }

    /// The functions that were running and whose process is gone: neither the binary
    /// nor the `cargo run` that rebuilds it carries their name any more.
    fn crashed(&mut self) -> Vec<String> {
        let runtime_api = format!("{}/", self.functions_url);
        let processes =
            remedios_emulators::child::processes_with_env("AWS_LAMBDA_RUNTIME_API", &runtime_api);
        let mut crashed = Vec::new();
        for function in FUNCTIONS {
            let running = processes.iter().any(|pid| {
                remedios_emulators::child::env_var(*pid, "AWS_LAMBDA_FUNCTION_NAME").as_deref()
                    == Some(function)
            });
            match self.missing.get_mut(function) {
                _ if running => {
                    self.missing.insert(function, 0);
                }
                Some(looks) => {
                    *looks += 1;
                    if *looks >= MISSING_LOOKS {
                        crashed.push(function.to_owned());
                    }
                }
                None => {}
            }
        }
        crashed
    }

    /// Whether the functions restarted too often lately to try again.
    fn restarting_too_often(&self) -> bool {
        let recent = self
            .restarts
            .iter()
            .filter(|r| r.at.elapsed().is_ok_and(|ago| ago < RESTART_WINDOW))
            .count();
        recent >= MAX_RESTARTS
    }
}

/// Starts the functions again whenever one of them died, as Lambda starts a fresh
/// execution environment after a crash. Stops when the watcher itself exits (`up`
/// reports that), when a restart fails, or after [`MAX_RESTARTS`] in
/// [`RESTART_WINDOW`].
async fn supervise(functions: Arc<tokio::sync::Mutex<Functions>>) {
    let mut ticker = tokio::time::interval(SUPERVISE_EVERY);
    loop {
        ticker.tick().await;
        let mut guard = functions.lock().await;
        if guard.watch.exited().is_some() {
            return;
        }
        let crashed = guard.crashed();
        if crashed.is_empty() {
            continue;
        }
        if guard.restarting_too_often() {
            tracing::error!(?crashed, "functions keep dying: not starting them again");
            guard.restarts.push(Restart {
                crashed,
                at: SystemTime::now(),
                outcome: Err(format!(
                    "they died {MAX_RESTARTS} times within {} minutes: not started again (see \
                     functions.log)",
                    RESTART_WINDOW.as_secs() / 60
                )),
            });
            return;
        }
        tracing::warn!(
            ?crashed,
            "a function's process died: starting the functions again"
        );
        let outcome = guard.restart().await.map_err(|e| e.to_string());
        let failed = outcome.is_err();
        guard.restarts.push(Restart {
            crashed,
            at: SystemTime::now(),
            outcome,
        });
        if failed {
            return;
        }
    }
}

/// What a stack started, to check that none of it is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processes {
    pub groups: Vec<i32>,
    /// Ports its processes listened on.
    pub ports: Vec<u16>,
    /// The functions' `AWS_LAMBDA_RUNTIME_API` prefix (cargo-lambda runs each function
    /// in a process group of its own).
    pub runtime_api: String,
}

impl Processes {
    /// Descriptions of what is still running.
    pub fn alive(&self) -> Vec<String> {
        let groups = self
            .groups
            .iter()
            .filter(|g| remedios_emulators::child::group_alive(**g))
            .map(|g| format!("process group {g}"));
        let ports = self
            .ports
            .iter()
            .filter(|p| std::net::TcpStream::connect(("127.0.0.1", **p)).is_ok())
            .map(|p| format!("a process listening on port {p}"));
        let functions = remedios_emulators::child::processes_with_env(
            "AWS_LAMBDA_RUNTIME_API",
            &self.runtime_api,
        )
        .into_iter()
        .map(|pid| format!("function process {pid}"));
        groups.chain(ports).chain(functions).collect()
    }
}

fn queue_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Invokes an SQS function with an empty batch: it answers once it has started
/// (configuration read, clients built).
async fn probe_sqs_function(invoker: &HttpInvoker, function: &str) -> Result<(), String> {
    use crate::pump::Invoke;
    let event = aws_lambda_events::event::sqs::SqsEvent::default();
    invoker
        .invoke(function, &event, Duration::from_secs(60))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The functions' environment: where the emulators are, the queues and bucket, the
/// user's settings over our defaults.
fn function_env(
    options: &Options,
    info: &StackInfo,
    resources: &remedios_template::LocalResources,
    credentials: &Path,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        env.insert(k.to_owned(), v.to_owned());
    };
    set("AWS_ENDPOINT_URL", &info.moto_url);
    set("AWS_REGION", iam::REGION);
    // Each function's own profile in this file: its `AWS_PROFILE` comes from the
    // workspace's cargo-lambda metadata.
    set(
        "AWS_SHARED_CREDENTIALS_FILE",
        &credentials.display().to_string(),
    );
    set(
        "AWS_CONFIG_FILE",
        &config_file(credentials).display().to_string(),
    );
    set("S3_FORCE_PATH_STYLE", "true");
    set("BUCKET_NAME", &info.bucket);
    // The webhook answers for this number only, as a deployed stack for its own.
    set("WHATSAPP_PHONE_NUMBER_ID", &info.phone_number_id);
    set("INBOUND_QUEUE_URL", &info.inbound.url);
    set("REPLY_QUEUE_URL", &info.reply.url);
    set("GPT4ALL_URL", &info.model_url);
    if !info.model_local {
        // A GPT4All on a CPU often needs more than the responder's 60 s default: give it
        // what the invocation has (its timeout less the reply margin). GPT4ALL_TIMEOUT_SECONDS
        // set by the user still wins (the loop below).
        let budget = resources
            .responder
            .timeout
            .saturating_sub(responder::deliver::REPLY_MARGIN)
            .as_secs()
            .max(1);
        set("GPT4ALL_TIMEOUT_SECONDS", &budget.to_string());
    }
    if let Some(name) = &info.model_name {
        set("GPT4ALL_MODEL", name);
    }
    set(
        "REPLY_MAX_RECEIVE_COUNT",
        &resources.reply.spec.max_receive_count.to_string(),
    );
    set(
        "INBOUND_MAX_RECEIVE_COUNT",
        &resources.inbound.spec.max_receive_count.to_string(),
    );
    if options.concurrent {
        set(
            "INBOUND_MAX_CONCURRENCY",
            &resources.transcriber.concurrency().to_string(),
        );
    }
    set(
        "WHISPER_MODEL_PATH",
        &default_whisper_model().display().to_string(),
    );
    set("LOG_FORMAT", "text");
    set("RUST_LOG", "info");
    if let Some(url) = &info.graph_emulator_url {
        set("GRAPH_API_BASE_URL", url);
        set("GRAPH_MEDIA_HOSTS", "127.0.0.1");
    }
    let secrets = secret_values(options, info);
    for (var, parameter) in &resources.secret_parameters {
        if secrets.contains_key(var.as_str()) {
            set(&format!("{var}_PARAM"), parameter);
        }
    }
    for (k, v) in &options.vars {
        // The secrets with a parameter went to SSM above; the model URL is the stack's;
        // the credentials are each function's own.
        let in_ssm =
            secrets.contains_key(k.as_str()) && resources.secret_parameters.contains_key(k);
        if k == "GPT4ALL_URL"
            || k == "KNOWLEDGE_DIR"
            || in_ssm
            || CREDENTIAL_VARS.contains(&k.as_str())
        {
            continue;
        }
        env.insert(k.clone(), v.clone());
    }
    env
}

/// The variables holding secrets: the functions get them from SSM, never from the
/// shell `remedios up` runs in.
const SECRET_VARS: [&str; 5] = [
    "WHATSAPP_APP_SECRET",
    "USER_TAG_KEY",
    "WHATSAPP_VERIFY_TOKEN",
    "WHATSAPP_ACCESS_TOKEN",
    "GPT4ALL_API_KEY",
];

/// The variables that would give every function the same AWS identity: none reaches
/// them, each has its own profile.
const CREDENTIAL_VARS: [&str; 4] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
];

/// With real WhatsApp connected (`WHATSAPP_ACCESS_TOKEN`), the stack signs and answers for
/// a real number, and its `/webhook` may be reachable through ngrok: the constant local
/// secrets, published in this repository, would let anyone who finds the URL make it send
/// real messages. So the app secret must be Meta's own, and a verify token given must not be
/// the local one.
pub fn refuse_public_secrets(options: &Options) -> Result<(), StackError> {
    if !options.real_whatsapp() {
        return Ok(());
    }
    match options.var("WHATSAPP_APP_SECRET") {
        None => Err(StackError::Prerequisite(
            "WHATSAPP_ACCESS_TOKEN is set (real WhatsApp) but WHATSAPP_APP_SECRET is not: set it to \
             your Meta app's secret (App settings > Basic), which signs Meta's calls"
                .into(),
        )),
        Some(LOCAL_APP_SECRET) => Err(StackError::Prerequisite(
            "WHATSAPP_APP_SECRET is the public local secret; with real WhatsApp use your Meta \
             app's secret (App settings > Basic)"
                .into(),
        )),
        Some(_) if options.var("WHATSAPP_VERIFY_TOKEN") == Some(LOCAL_VERIFY_TOKEN) => {
            Err(StackError::Prerequisite(
                "WHATSAPP_VERIFY_TOKEN is the public local token; with real WhatsApp leave it unset \
                 (a random one is made and kept) or choose your own"
                    .into(),
            ))
        }
        Some(_) => Ok(()),
    }
}

/// The app secret and verify token of the stack's `/webhook`: the local constants with the
/// emulator; with real WhatsApp the given app secret and, unless one is given, a random
/// verify token kept in `keep_dir/verify-token` (Meta's dashboard holds it across restarts).
pub fn webhook_secrets(options: &Options, keep_dir: &Path) -> Result<(String, String), StackError> {
    refuse_public_secrets(options)?;
    let app_secret = options
        .var("WHATSAPP_APP_SECRET")
        .unwrap_or(LOCAL_APP_SECRET)
        .to_owned();
    if let Some(token) = options.var("WHATSAPP_VERIFY_TOKEN") {
        return Ok((app_secret, token.to_owned()));
    }
    if !options.real_whatsapp() {
        return Ok((app_secret, LOCAL_VERIFY_TOKEN.to_owned()));
    }
    let kept = keep_dir.join("verify-token");
    let spawn = |what: &str, source| StackError::Spawn {
        what: format!("{what} {}", kept.display()),
        source,
    };
    let token = match std::fs::read_to_string(&kept) {
        Ok(token) if !token.trim().is_empty() => token.trim().to_owned(),
        _ => {
            let token = random_key()?;
            std::fs::create_dir_all(keep_dir).map_err(|e| spawn("the folder of", e))?;
            private_file(&kept, &token).map_err(|e| spawn("writing", e))?;
            token
        }
    };
    Ok((app_secret, token))
}

/// The functions' principals on the emulator, each with exactly its role's statements
/// in the template, over the stack's queues and bucket. The principal of
/// `WebhookFunction` is `webhook`, its binary's name and its profile's.
fn function_principals(
    resources: &remedios_template::LocalResources,
    bucket: &str,
) -> Result<Vec<Principal>, StackError> {
    let arns = [
        (
            "InboundQueue.Arn",
            iam::queue_arn(&resources.inbound.queue_name()),
        ),
        (
            "ReplyQueue.Arn",
            iam::queue_arn(&resources.reply.queue_name()),
        ),
        ("Bucket.Arn", iam::bucket_arn(bucket)),
    ];
    [
        remedios_template::WEBHOOK_FUNCTION,
        remedios_template::TRANSCRIBER_FUNCTION,
        remedios_template::RESPONDER_FUNCTION,
    ]
    .into_iter()
    .map(|function| {
        iam::function_principal(function, &arns).map_err(|e| StackError::Template(e.to_string()))
    })
    .collect()
}

/// Writes the functions' profiles: `credentials` with each one's key, and the config
/// file beside it with their region (both readable by the owner only, like `~/.aws`).
fn write_credentials(moto: &Moto, credentials: &Path) -> Result<(), StackError> {
    let mut keys =
        String::from("# Written by `remedios up`: each function's key on the emulator.\n");
    let mut config = String::from("# Written by `remedios up`.\n");
    for function in FUNCTIONS {
        let key = moto.access_key(function)?;
        keys.push_str(&format!(
            "[{function}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            key.id, key.secret
        ));
        config.push_str(&format!("[profile {function}]\nregion = {}\n", iam::REGION));
    }
    for (path, text) in [
        (credentials.to_owned(), keys),
        (config_file(credentials), config),
    ] {
        private_file(&path, &text).map_err(|source| StackError::Spawn {
            what: format!("the credentials file {}", path.display()),
            source,
        })?;
    }
    Ok(())
}

/// The AWS config file written beside `credentials`.
fn config_file(credentials: &Path) -> PathBuf {
    credentials.with_file_name("aws-config")
}

/// Writes `text` to `path` readable and writable by its owner only (0600), a file that
/// existed with wider permissions included: before anything is written.
fn private_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

/// The stack's secrets by variable: the app secret and verify token it signs with, the
/// access token (the emulator's, or the user's for real WhatsApp), the model host's key
/// when one is set.
fn secret_values<'a>(options: &'a Options, info: &'a StackInfo) -> BTreeMap<&'static str, &'a str> {
    let mut secrets = BTreeMap::from([
        ("WHATSAPP_APP_SECRET", info.app_secret.as_str()),
        ("USER_TAG_KEY", info.user_tag_key.as_str()),
        ("WHATSAPP_VERIFY_TOKEN", info.verify_token.as_str()),
    ]);
    let token = match info.graph_emulator_url {
        Some(_) => Some(EMULATOR_TOKEN),
        None => options.var("WHATSAPP_ACCESS_TOKEN"),
    };
    if let Some(token) = token {
        secrets.insert("WHATSAPP_ACCESS_TOKEN", token);
    }
    if let Some(key) = options.var("GPT4ALL_API_KEY") {
        secrets.insert("GPT4ALL_API_KEY", key);
    }
    secrets
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else the one `scripts/test.sh` uses
/// (`$HOME/.cache/remedios/target`), so the stack and the tests share their builds.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/remedios/target"))
        .unwrap_or_else(|| paths::workspace_root().join("target"))
}

fn cargo_lambda() -> PathBuf {
    paths::venv_bin("cargo-lambda")
}

/// `cargo build` of the three functions, so the first invocation does not compile.
async fn build_functions(options: &Options, progress: &impl Fn(&str)) -> Result<(), StackError> {
    let log = options.log_dir.join("build.log");
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(paths::workspace_root())
        .env("CARGO_TARGET_DIR", target_dir())
        .arg("build");
    for f in FUNCTIONS {
        command.args(["-p", f]);
    }
    command.arg("--bins");
    if options.release {
        command.arg("--release");
    }
    // The log may hold earlier builds: progress counts only this one's lines.
    let skip = std::fs::read_to_string(&log).map_or(0, |text| text.len());
    let started = Instant::now();
    let mut child =
        GroupChild::spawn("cargo build", command, &log).map_err(|source| StackError::Spawn {
            what: "cargo build".into(),
            source,
        })?;
    let mut ticker = tokio::time::interval(BUILD_PROGRESS_EVERY);
    ticker.tick().await;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = ticker.tick() => {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let built = BuildProgress::of(text.get(skip..).unwrap_or_default());
                progress(&built.line(started.elapsed()));
            }
        }
    }
    .map_err(|source| StackError::Spawn {
        what: "cargo build".into(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(StackError::Build {
            detail: last_lines(&log, 15),
            log,
        })
    }
}

/// How often `up` says how far the functions' build has got.
const BUILD_PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// How far a `cargo build` has got, read from its output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildProgress {
    /// Crates compiled so far (cargo's `Compiling` lines).
    pub compiled: usize,
    /// The crate cargo started last.
    pub latest: Option<String>,
}

impl BuildProgress {
    pub fn of(output: &str) -> Self {
        let mut progress = BuildProgress::default();
        for line in output.lines() {
            if let Some(rest) = line.trim_start().strip_prefix("Compiling ") {
                progress.compiled += 1;
                progress.latest = rest.split_whitespace().next().map(str::to_owned);
            }
        }
        progress
    }

    /// `still building (1m 30s): 212 crates compiled, now whisper-rs-sys`
    pub fn line(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs();
        let mut line = format!(
            "still building ({}m {:02}s): {} crates compiled",
            secs / 60,
            secs % 60,
            self.compiled
        );
        if let Some(latest) = &self.latest {
            line.push_str(", now ");
            line.push_str(latest);
        }
        line
    }
}

fn last_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn spawn_functions(
    options: &Options,
    env: &BTreeMap<String, String>,
    concurrency: usize,
) -> Result<GroupChild, StackError> {
    let mut command = Command::new(cargo_lambda());
    command
        .current_dir(paths::workspace_root())
        .args(["lambda", "watch", "-A", "127.0.0.1", "-P"])
        .arg(options.ports.functions.to_string())
        .args(["--timeout", "900"])
        .args(["--concurrency", &concurrency.to_string()]);
    if !options.hot_reload {
        command.arg("--ignore-changes");
    }
    if options.release {
        command.arg("--release");
    }
    // A secret in the user's shell must not reach the functions beside its parameter.
    for var in SECRET_VARS.iter().chain(&CREDENTIAL_VARS) {
        command.env_remove(var);
    }
    command.envs(env).env("CARGO_TARGET_DIR", target_dir());
    GroupChild::spawn(
        "cargo lambda watch",
        command,
        &options.log_dir.join("functions.log"),
    )
    .map_err(|source| StackError::Spawn {
        what: format!("{} lambda watch", cargo_lambda().display()),
        source,
    })
}

/// `/webhook` on `port`, forwarded to the webhook's function URL under cargo-lambda:
/// the one path of the stack that may be exposed (ngrok), like the HTTP API in AWS.
async fn spawn_webhook_proxy(
    port: u16,
    functions_url: &str,
    limits: webhook_proxy::Limits,
) -> Result<tokio::task::JoinHandle<()>, StackError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StackError::Spawn {
            what: format!("the webhook endpoint on {addr}"),
            source,
        })?;
    let target = format!("{functions_url}/lambda-url/webhook/");
    Ok(tokio::spawn(webhook_proxy::serve(listener, target, limits)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_files_are_owner_only_even_when_they_existed_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let fresh = dir.path().join("fresh");
        private_file(&fresh, "secret").expect("written");
        let old = dir.path().join("stack.json");
        std::fs::write(&old, "{}").expect("an old file");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("0644");
        private_file(&old, "secret").expect("rewritten");
        for path in [&fresh, &old] {
            let mode = std::fs::metadata(path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
            assert_eq!(std::fs::read_to_string(path).expect("read"), "secret");
        }
    }

    #[test]
    fn build_progress_counts_cargos_compiling_lines_and_names_the_latest() {
        let output = "   Compiling libc v0.2.180\n\
                      warning: unused variable\n   \
                      Compiling whisper-rs-sys v0.14.1\n   \
                      Compiling responder v0.1.0 (/work/main/functions/responder)\n";
        let progress = BuildProgress::of(output);
        assert_eq!(progress.compiled, 3);
        assert_eq!(progress.latest.as_deref(), Some("responder"));
        assert_eq!(
            progress.line(Duration::from_secs(95)),
            "still building (1m 35s): 3 crates compiled, now responder"
        );
        assert_eq!(
            BuildProgress::of("    Finished `dev` profile\n").line(Duration::from_secs(15)),
            "still building (0m 15s): 0 crates compiled"
        );
    }
}
