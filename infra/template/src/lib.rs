//! The SAM template, `infra/template.yaml`, read so the local stack creates the same
//! queues, dead-letter queues and bucket as a deployed stack, and so the tests can check
//! the template's invariants (`tests/tests/infra_template.rs`).
//!
//! [`Template`] is the document as written, CloudFormation tags (`!Ref`, `!Sub`, ...)
//! kept. A [`Deployment`] is a template with parameter values: it evaluates the intrinsic
//! functions the template uses (`Ref`, `Sub`, `GetAtt`, `FindInMap`, `If`, the
//! condition functions, `Join`, `Select`) and reads resources into typed values
//! ([`QueueResource`], [`BucketSettings`], [`Function`], [`Role`]). What only AWS knows stays
//! symbolic: a reference to a resource evaluates to `${LogicalId}` and an attribute to
//! `${LogicalId.Attribute}`, e.g. `${Bucket.Arn}/media/*`.
//!
//! ```no_run
//! let local = remedios_template::local_resources("remedios")?;
//! assert_eq!(local.inbound.queue_name(), "remedios-inbound.fifo");
//! # Ok::<(), remedios_template::TemplateError>(())
//! ```
//!
//! The crate is laid out as the reading goes:
//! - [`document`]: the template as written ([`Template`], its parameters and resources);
//! - [`eval`]: a [`Deployment`], the template with parameter values, and the intrinsic
//!   functions it evaluates;
//! - [`resources`]: the typed resources read from a deployment, and
//!   [`QueueDefinition`] / [`QueueSpec`], the queues as the emulators create them;
//! - [`error`]: what can go wrong, said with where.

mod properties;

pub mod document;
pub mod error;
pub mod eval;
pub mod resources;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use document::{Globals, Output, Parameter, Resource, Template};
pub use error::TemplateError;
pub use eval::{Deployment, DeploymentSettings};
pub use properties::LoggingConfig;
pub use resources::*;

/// Logical id of the queue the webhook fills and the transcriber drains.
pub const INBOUND_QUEUE: &str = "InboundQueue";
/// Logical id of the queue the transcriber fills and the responder drains.
pub const REPLY_QUEUE: &str = "ReplyQueue";
/// Logical id of the bucket.
pub const BUCKET: &str = "Bucket";
/// Logical ids of the three functions.
pub const WEBHOOK_FUNCTION: &str = "WebhookFunction";
pub const TRANSCRIBER_FUNCTION: &str = "TranscriberFunction";
pub const RESPONDER_FUNCTION: &str = "ResponderFunction";

/// `infra/template.yaml` of [`workspace_root`].
pub fn template_path() -> PathBuf {
    workspace_root().join("infra").join("template.yaml")
}

/// The checkout: `REMEDIOS_HOME` when set; else the nearest directory holding
/// `infra/template.yaml` at or above the package cargo runs (`CARGO_MANIFEST_DIR` at run
/// time, set by `cargo test` and `cargo run`), the current directory, or the directory
/// this crate was built from, in that order.
///
/// The path baked in at build time is only the last resort: cargo reuses a workspace
/// member's build from another checkout of the same commit, so it may name a directory
/// that no longer exists.
pub fn workspace_root() -> PathBuf {
    if let Some(home) = std::env::var_os("REMEDIOS_HOME") {
        return PathBuf::from(home);
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    let starts = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        std::env::current_dir().ok(),
        Some(built_from.clone()),
    ];
    starts
        .into_iter()
        .flatten()
        .find_map(|start| {
            start
                .ancestors()
                .find(|dir| dir.join("infra").join("template.yaml").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or(built_from)
}

/// What the local stack creates and runs, as the template declares it with its
/// default parameters, named after `stack_name` as CloudFormation would name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResources {
    pub inbound: QueueDefinition,
    pub reply: QueueDefinition,
    pub bucket: BucketSettings,
    /// The transcriber's event source on the inbound queue.
    pub transcriber: Consumer,
    /// The responder's event source on the reply queue.
    pub responder: Consumer,
    /// Each function's memory in MB, by the parameter that sets it (`TranscriberMemorySize`),
    /// or by the function's logical id when the template writes a number.
    pub memory_mb: BTreeMap<String, u32>,
    /// Where the functions read their secrets, as the template wires them: each
    /// variable with an SSM parameter (`WHATSAPP_ACCESS_TOKEN` for
    /// `WHATSAPP_ACCESS_TOKEN_PARAM`) and the parameter's name. A `_PARAM` variable left
    /// empty (an optional secret not configured) is not listed.
    pub secret_parameters: BTreeMap<String, String>,
    /// The responder's environment as the template sets it (its model hosts).
    pub responder_environment: BTreeMap<String, String>,
}

/// A function draining a queue: its SQS event source and its timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Logical id of the function.
    pub function: String,
    /// Records per invocation (SQS event sources default to 10).
    pub batch_size: u32,
    pub timeout: Duration,
    pub maximum_concurrency: Option<u32>,
    pub report_batch_item_failures: bool,
}

impl Consumer {
    /// Invocations at once: the event source's `MaximumConcurrency`, or 1 without one.
    pub fn concurrency(&self) -> usize {
        self.maximum_concurrency.map_or(1, |c| c.max(1) as usize)
    }
}

/// Reads the workspace's template and returns the queues and bucket settings of a
/// stack called `stack_name` with default parameters.
///
/// Parameters without a default (the phone number id, the GPT4All URL: they shape no
/// queue and no bucket) get placeholder values.
pub fn local_resources(stack_name: &str) -> Result<LocalResources, TemplateError> {
    local_resources_with(stack_name, &BTreeMap::new())
}

/// [`local_resources`] with template parameters set (a stack's saved overrides).
pub fn local_resources_with(
    stack_name: &str,
    parameters: &BTreeMap<String, String>,
) -> Result<LocalResources, TemplateError> {
    let template = Template::load(&template_path())?;
    let mut settings = local_settings(&template, stack_name);
    for (name, value) in parameters {
        if template.parameters.contains_key(name) {
            settings = settings.with(name, value);
        }
    }
    let deployment = template.deployment(settings)?;
    let mut secret_parameters = BTreeMap::new();
    let mut memory_mb = BTreeMap::new();
    let mut responder_environment = BTreeMap::new();
    for function in [WEBHOOK_FUNCTION, TRANSCRIBER_FUNCTION, RESPONDER_FUNCTION] {
        let declared = deployment.function(function)?;
        if let Some(mb) = declared.memory_size {
            let setter = template.resources[function]
                .properties
                .get("MemorySize")
                .and_then(|v| template.referenced_parameter(v))
                .unwrap_or(function);
            memory_mb.insert(setter.to_owned(), mb);
        }
        for (var, value) in &declared.environment {
            if let Some(secret) = var.strip_suffix("_PARAM")
                && !value.is_empty()
            {
                secret_parameters.insert(secret.to_owned(), value.clone());
            }
        }
        if function == RESPONDER_FUNCTION {
            responder_environment = declared.environment;
        }
    }
    Ok(LocalResources {
        secret_parameters,
        inbound: deployment.queue_definition(INBOUND_QUEUE)?,
        reply: deployment.queue_definition(REPLY_QUEUE)?,
        bucket: deployment.bucket(BUCKET)?,
        transcriber: deployment.consumer_of(INBOUND_QUEUE)?,
        responder: deployment.consumer_of(REPLY_QUEUE)?,
        memory_mb,
        responder_environment,
    })
}

/// The role of the template's function `function` (a logical id such as
/// [`RESPONDER_FUNCTION`]) in a stack with default parameters but `parameters`: what a
/// function runs with locally and in the tests.
pub fn local_role(function: &str, parameters: &[(&str, &str)]) -> Result<Role, TemplateError> {
    let template = Template::load(&template_path())?;
    let mut settings = local_settings(&template, "remedios-local");
    for (name, value) in parameters {
        settings = settings.with(name, value);
    }
    let deployment = template.deployment(settings)?;
    let role = deployment
        .function(function)?
        .role
        .ok_or_else(|| error::invalid(function, "has no Role"))?;
    deployment.role(&role)
}

/// Default parameters, with placeholders for those that have none.
fn local_settings(template: &Template, stack_name: &str) -> DeploymentSettings {
    let mut settings = DeploymentSettings::new(stack_name);
    for (name, parameter) in &template.parameters {
        if parameter.default.is_none() {
            let placeholder = if parameter.is_number() { "0" } else { "local" };
            settings = settings.with(name, placeholder);
        }
    }
    settings
}

#[cfg(test)]
mod tests;
