//! `infra/template.yaml`: SAM's own lint, and the invariants that keep data safe, read
//! through `remedios_template` (the same reader the local stack uses), then the
//! local stack's resources created from it on a real moto. One file per family of checks;
//! this one holds what they share.

mod costs;
mod environment;
mod local_stack;
mod queues;
mod resources;
mod roles;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use remedios_shared::config::{Origin, Setting};
use remedios_template::{
    self as infra, BUCKET, Deployment, DeploymentSettings, EventSource, Function, INBOUND_QUEUE,
    REPLY_QUEUE, RESPONDER_FUNCTION, TRANSCRIBER_FUNCTION, Template, WEBHOOK_FUNCTION,
};
use remedios_testkit::moto::{self, Moto, QueueDefinition, QueueSpec};
use remedios_testkit::paths;

const FUNCTIONS: [&str; 3] = [WEBHOOK_FUNCTION, TRANSCRIBER_FUNCTION, RESPONDER_FUNCTION];
const SERVERLESS_FUNCTION: &str = "AWS::Serverless::Function";
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

fn template() -> Template {
    Template::load(&infra::template_path()).expect("infra/template.yaml parses")
}

/// Values for the parameters without defaults, plus `extra`.
fn settings(extra: &[(&str, &str)]) -> DeploymentSettings {
    let mut settings = DeploymentSettings::new("remedios")
        .with("WhatsAppPhoneNumberId", "1234567890")
        .with("Gpt4AllBaseUrl", "https://gpt4all.example.net/v1");
    for (name, value) in extra {
        settings = settings.with(name, value);
    }
    settings
}

fn stack<'t>(template: &'t Template, extra: &[(&str, &str)]) -> Deployment<'t> {
    template
        .deployment(settings(extra))
        .unwrap_or_else(|e| panic!("stack with {extra:?}: {e}"))
}

fn function(stack: &Deployment<'_>, id: &str) -> Function {
    stack
        .function(id)
        .unwrap_or_else(|e| panic!("function {id}: {e}"))
}

/// The parameter combinations whose conditions change roles and environments.
const VARIANTS: [&[(&str, &str)]; 4] = [
    &[],
    &[
        ("WhisperModelS3Key", ""),
        (
            "WhisperModelLayerArn",
            "arn:aws:lambda:us-east-1:123456789012:layer:whisper-base:3",
        ),
    ],
    &[("Gpt4AllApiKeyParameterName", "/remedios/gpt4all-api-key")],
    &[(
        "SecretsKmsKeyArn",
        "arn:aws:kms:us-east-1:123456789012:key/0f0e0d0c-1111-2222-3333-444455556666",
    )],
];

/// A valid environment for `function_id`, as the template wires it with default
/// parameters, what only AWS knows replaced by plausible values.
fn base_environment(stack: &Deployment<'_>, function_id: &str) -> BTreeMap<String, String> {
    function(stack, function_id)
        .environment
        .into_iter()
        .map(|(k, v)| {
            let v = if v.contains("${") {
                match k.as_str() {
                    k if k.ends_with("_URL") => {
                        "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo".to_owned()
                    }
                    _ => "remedios-placeholder".to_owned(),
                }
            } else {
                v
            };
            (k, v)
        })
        .collect()
}
