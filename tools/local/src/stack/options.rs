//! How to start the stack: its ports, and the settings it passes to the functions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::webhook_proxy;
use remedios_emulators::paths;
use remedios_emulators::ports::free_port;
use remedios_shared::config::{Origin, Setting};

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
    /// Record the stack in [`super::STATE_FILE`] for `remedios chat` (off in tests, so a
    /// test never overwrites the record of a stack a developer is running).
    pub record_state: bool,
    /// The `/webhook` endpoint's timeouts and bounds for slow clients.
    pub webhook_limits: webhook_proxy::ProxyBounds,
    /// Put a cuttable [`Link`](remedios_emulators::link::Link) between the AWS emulator and its clients (the functions
    /// and the event pump), for tests that give them an outage ([`super::LocalStack::aws_link`]).
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

/// Every variable the three functions read, as each declares it in its configuration
/// (`settings()`), once per name.
pub fn function_settings() -> Vec<Setting> {
    let mut settings = webhook::config::settings();
    settings.extend(transcriber::config::settings());
    settings.extend(responder::config::settings());
    let mut seen = std::collections::BTreeSet::new();
    settings.retain(|s| seen.insert(s.name));
    settings
}

/// The stack's own variables besides the functions' settings: a folder uploaded to
/// `knowledge/` and indexed before the functions start.
pub const STACK_VARS: &[&str] = &["KNOWLEDGE_DIR"];

/// Variables the deployment gives the functions that make no sense on one machine: the
/// model is read from disk (`WHISPER_MODEL_PATH`), not fetched from the bucket.
pub const NOT_LOCAL: &[&str] = &["WHISPER_MODEL_S3_KEY"];

/// Variables the functions read that the stack sets itself, from what it started (the
/// settings whose origin is the deployment). `INBOUND_MAX_CONCURRENCY` only with
/// [`Options::concurrent`]; `AWS_ENDPOINT_URL_S3` never (`AWS_ENDPOINT_URL` serves S3 too).
pub const SET_BY_STACK: &[&str] = &[
    "BUCKET_NAME",
    "INBOUND_QUEUE_URL",
    "REPLY_QUEUE_URL",
    "INBOUND_MAX_RECEIVE_COUNT",
    "REPLY_MAX_RECEIVE_COUNT",
    "INBOUND_MAX_CONCURRENCY",
    "GRAPH_API_BASE_URL",
    "GRAPH_MEDIA_HOSTS",
    "AWS_ENDPOINT_URL",
    "S3_FORCE_PATH_STYLE",
];

/// Whether `remedios up` hands `name`, found in its own environment, to the functions:
/// every setting a function declares as the operator's (secrets included, which go to
/// SSM), and the stack's own; never what the deployment sets.
pub fn passes(name: &str) -> bool {
    STACK_VARS.contains(&name)
        || (!NOT_LOCAL.contains(&name)
            && function_settings().iter().any(|s| {
                s.origin != Origin::Deployment
                    && match s.prefix {
                        Some(prefix) => name.starts_with(prefix),
                        None => s.name == name,
                    }
            }))
}

impl Options {
    /// From the process environment: `REMEDIOS_PORT`, `REMEDIOS_RELEASE`, and the
    /// variables it [`passes`] on.
    pub fn from_env() -> Self {
        let base = std::env::var("REMEDIOS_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(DEFAULT_BASE_PORT);
        let vars = Self::passed(std::env::vars());
        Options {
            ports: Ports::from_base(base),
            vars,
            release: std::env::var("REMEDIOS_RELEASE").is_ok_and(|v| v == "1" || v == "true"),
            hot_reload: true,
            log_dir: paths::cache_dir().join("local").join("logs"),
            ready_timeout: Duration::from_secs(900),
            record_state: true,
            webhook_limits: webhook_proxy::ProxyBounds::default(),
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
            webhook_limits: webhook_proxy::ProxyBounds::default(),
            aws_link: false,
            visibility_timeout: None,
            revive_crashed: false,
            concurrent: false,
        })
    }

    /// The variables of `environment` the stack [`passes`] on (empty ones left out).
    pub fn passed(
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> BTreeMap<String, String> {
        environment
            .into_iter()
            .filter(|(name, value)| passes(name) && !value.trim().is_empty())
            .collect()
    }

    pub(super) fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Whether real WhatsApp credentials are configured (then the real Graph API is used).
    pub fn real_whatsapp(&self) -> bool {
        self.var("WHATSAPP_ACCESS_TOKEN").is_some()
    }
}
