//! `infra/template.yaml`: SAM's own lint, and the invariants that keep data safe, read
//! through `remedios_template` (the same reader the local stack uses), then the
//! local stack's resources created from it on a real moto.

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

#[test]
fn sam_validate_lint_passes() {
    let sam = paths::venv_bin("sam");
    assert!(
        sam.exists(),
        "the SAM CLI is not at {}: run scripts/bootstrap.sh (aws-sam-cli is in scripts/requirements-dev.txt)",
        sam.display()
    );
    let infra_dir = paths::workspace_root().join("infra");
    let out = Command::new(&sam)
        .args(["validate", "--lint", "-t", "template.yaml"])
        .current_dir(&infra_dir)
        // Offline: a region for the validator, no telemetry, no credentials needed.
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_REGION", REGION)
        .env("SAM_CLI_TELEMETRY", "0")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", sam.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("is a valid SAM Template"),
        "sam validate --lint failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
fn every_queue_has_a_fifo_dead_letter_queue_that_outlives_it() {
    let template = template();
    let stack = stack(&template, &[]);
    let queues: Vec<_> = template.resources_of_type("AWS::SQS::Queue").collect();
    let targets: BTreeSet<String> = queues
        .iter()
        .filter_map(|id| {
            stack
                .queue(id)
                .unwrap()
                .redrive
                .map(|r| r.dead_letter_queue)
        })
        .collect();
    assert_eq!(
        targets,
        BTreeSet::from([
            "InboundDeadLetterQueue".into(),
            "ReplyDeadLetterQueue".into()
        ])
    );
    for id in &queues {
        let queue = stack.queue(id).unwrap();
        assert!(queue.encrypted, "{id} is not encrypted at rest");
        assert!(queue.fifo, "{id} is not a FIFO queue");
        assert!(
            !queue.content_based_deduplication,
            "{id}: we set deduplication ids ourselves"
        );
        if targets.contains(*id) {
            assert!(
                queue.redrive.is_none(),
                "dead-letter queue {id} redrives further"
            );
            continue;
        }
        let redrive = queue
            .redrive
            .unwrap_or_else(|| panic!("queue {id} has no dead-letter queue"));
        let dlq = stack.queue(&redrive.dead_letter_queue).unwrap();
        assert!(
            dlq.fifo,
            "the dead-letter queue of FIFO queue {id} must be FIFO"
        );
        assert!(
            dlq.message_retention > queue.message_retention,
            "{id}'s dead-letter queue keeps messages {:?}, not longer than the queue ({:?})",
            dlq.message_retention,
            queue.message_retention
        );
        assert!(
            (2..=20).contains(&redrive.max_receive_count),
            "{id}: maxReceiveCount {}",
            redrive.max_receive_count
        );
    }
}

#[test]
fn every_sqs_consumer_reports_batch_item_failures_with_bounded_batches_and_concurrency() {
    let template = template();
    let stack = stack(&template, &[]);
    let mut consumed = BTreeSet::new();
    for id in template.resources_of_type(SERVERLESS_FUNCTION) {
        for event in function(&stack, id).sqs_events() {
            assert!(
                event.report_batch_item_failures,
                "{id}: an SQS event source without ReportBatchItemFailures retries whole batches"
            );
            assert_eq!(
                event.batch_size,
                Some(1),
                "{id}: one message per invocation"
            );
            assert!(
                event.maximum_concurrency.is_some_and(|c| c >= 2),
                "{id}: set ScalingConfig.MaximumConcurrency (2 or more)"
            );
            assert!(
                consumed.insert(event.queue.clone()),
                "{} has two consumers",
                event.queue
            );
        }
    }
    assert_eq!(
        consumed,
        BTreeSet::from([INBOUND_QUEUE.to_owned(), REPLY_QUEUE.to_owned()])
    );
    let responder = stack.consumer_of(REPLY_QUEUE).unwrap();
    assert_eq!(
        responder.maximum_concurrency,
        Some(2),
        "the GPT4All host answers two requests at a time by default"
    );
}

/// Every value a function's timeout parameter may take.
fn timeout_values(template: &Template, function_id: &str) -> Vec<String> {
    let raw = &template.resources[function_id].properties["Timeout"];
    let parameter = template
        .referenced_parameter(raw)
        .unwrap_or_else(|| panic!("{function_id}: Timeout should be a parameter"));
    let allowed = template.parameters[parameter]
        .allowed_values
        .as_ref()
        .unwrap_or_else(|| panic!("{parameter} should list its allowed values"));
    allowed
        .iter()
        .map(|v| match v {
            serde_norway::Value::Number(n) => n.to_string(),
            serde_norway::Value::String(s) => s.clone(),
            other => panic!("{parameter}: {other:?}"),
        })
        .collect()
}

#[test]
fn visibility_timeouts_are_at_least_six_times_the_consumer_timeout_for_every_allowed_timeout() {
    let template = template();
    let mut checked = 0;
    for id in template.resources_of_type(SERVERLESS_FUNCTION) {
        let base = stack(&template, &[]);
        if function(&base, id).sqs_events().next().is_none() {
            continue;
        }
        let parameter = template
            .referenced_parameter(&template.resources[id].properties["Timeout"])
            .unwrap()
            .to_owned();
        for value in timeout_values(&template, id) {
            let stack = stack(&template, &[(&parameter, &value)]);
            let f = function(&stack, id);
            let timeout = f.timeout.unwrap();
            for event in f.sqs_events() {
                let queue = stack.queue(&event.queue).unwrap();
                let batching =
                    Duration::from_secs(event.maximum_batching_window_seconds.unwrap_or(0).into());
                assert!(
                    queue.visibility_timeout >= timeout * 6 + batching,
                    "{id} with {parameter}={value}: {} visibility timeout {:?} < 6 x {timeout:?}",
                    event.queue,
                    queue.visibility_timeout
                );
                assert!(queue.visibility_timeout <= Duration::from_secs(43_200));
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 6 + 7, "every allowed timeout of both consumers");
}

#[test]
fn both_consumers_give_up_on_the_delivery_sqs_dead_letters() {
    let template = template();
    for count in ["5", "2", "13"] {
        let stack = stack(&template, &[("MaxReceiveCount", count)]);
        for (name, queue, var) in [
            (RESPONDER_FUNCTION, REPLY_QUEUE, "REPLY_MAX_RECEIVE_COUNT"),
            (
                TRANSCRIBER_FUNCTION,
                INBOUND_QUEUE,
                "INBOUND_MAX_RECEIVE_COUNT",
            ),
        ] {
            let consumer = function(&stack, name);
            let redrive = stack.queue(queue).unwrap().redrive.unwrap();
            assert_eq!(
                consumer.environment.get(var),
                Some(&redrive.max_receive_count.to_string()),
                "{name} with MaxReceiveCount={count}"
            );
            assert_eq!(redrive.max_receive_count.to_string(), count);
        }
    }
}

// ------------------------------------------------------------------ roles

fn ssm(name: &str) -> String {
    format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}")
}

type Grants = BTreeSet<(String, String)>;

fn consume(queue: &str) -> Vec<(&'static str, String)> {
    [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    ]
    .into_iter()
    .map(|a| (a, format!("${{{queue}.Arn}}")))
    .collect()
}

/// What each role may do, for a variant of the parameters.
fn expected_grants(function_id: &str, extra: &[(&str, &str)]) -> Grants {
    let set = |name: &str| extra.iter().any(|(n, v)| *n == name && !v.is_empty());
    let layer = set("WhisperModelLayerArn");
    let api_key = set("Gpt4AllApiKeyParameterName");
    let mut g: Vec<(String, String)> = Vec::new();
    let mut add = |a: &str, r: String| g.push((a.to_owned(), r));
    let log_group = format!(
        "${{{}LogGroup.Arn}}",
        function_id.trim_end_matches("Function")
    );
    add("logs:CreateLogStream", log_group.clone());
    add("logs:PutLogEvents", log_group);
    if let Some((_, key)) = extra.iter().find(|(n, _)| *n == "SecretsKmsKeyArn") {
        add("kms:Decrypt", (*key).to_owned());
    }
    match function_id {
        WEBHOOK_FUNCTION => {
            add("ssm:GetParameters", ssm("/remedios/whatsapp-verify-token"));
            add("ssm:GetParameters", ssm("/remedios/whatsapp-app-secret"));
            add("ssm:GetParameters", ssm("/remedios/user-tag-key"));
            add("sqs:SendMessage", "${InboundQueue.Arn}".into());
            add("s3:PutObject", "${Bucket.Arn}/quarantine/*".into());
        }
        TRANSCRIBER_FUNCTION => {
            add("ssm:GetParameters", ssm("/remedios/whatsapp-access-token"));
            for (a, r) in consume(INBOUND_QUEUE) {
                add(a, r);
            }
            add("sqs:SendMessage", "${ReplyQueue.Arn}".into());
            // Voice notes go back to the inbound queue, in their speech lane.
            add("sqs:SendMessage", "${InboundQueue.Arn}".into());
            for prefix in ["messages", "media", "transcripts", "usage", "lanes"] {
                add("s3:GetObject", format!("${{Bucket.Arn}}/{prefix}/*"));
                add("s3:PutObject", format!("${{Bucket.Arn}}/{prefix}/*"));
            }
            add("s3:ListBucket", "${Bucket.Arn}".into());
            // A usage record that does not parse is moved aside (Store::get_state).
            add(
                "s3:PutObject",
                "${Bucket.Arn}/quarantine/state/usage/*".into(),
            );
            add("s3:DeleteObject", "${Bucket.Arn}/usage/*".into());
            if !layer {
                add(
                    "s3:GetObject",
                    "${Bucket.Arn}/models/ggml-base-q8_0.bin".into(),
                );
            }
        }
        RESPONDER_FUNCTION => {
            add("ssm:GetParameters", ssm("/remedios/whatsapp-access-token"));
            if api_key {
                add("ssm:GetParameters", ssm("/remedios/gpt4all-api-key"));
            }
            for (a, r) in consume(REPLY_QUEUE) {
                add(a, r);
            }
            for prefix in ["conversations", "replies"] {
                add("s3:GetObject", format!("${{Bucket.Arn}}/{prefix}/*"));
                add("s3:PutObject", format!("${{Bucket.Arn}}/{prefix}/*"));
            }
            add("s3:GetObject", "${Bucket.Arn}/knowledge/*".into());
            add("s3:GetObject", "${Bucket.Arn}/knowledge-index/*".into());
            add("s3:PutObject", "${Bucket.Arn}/knowledge-index/*".into());
            // `/reset` (History::clear); the enforced tests call it as this role.
            add("s3:DeleteObject", "${Bucket.Arn}/conversations/*".into());
            // A conversation or reply record that does not parse is moved aside
            // (Store::get_state).
            for prefix in ["conversations", "replies"] {
                add(
                    "s3:PutObject",
                    format!("${{Bucket.Arn}}/quarantine/state/{prefix}/*"),
                );
            }
            add("s3:DeleteObject", "${Bucket.Arn}/replies/*".into());
            add("s3:ListBucket", "${Bucket.Arn}".into());
        }
        other => panic!("no expectations for {other}"),
    }
    g.into_iter().collect()
}

#[test]
fn each_role_grants_exactly_what_its_function_uses() {
    let template = template();
    for extra in VARIANTS {
        let stack = stack(&template, extra);
        let mut roles = BTreeSet::new();
        for id in FUNCTIONS {
            let f = function(&stack, id);
            assert!(
                !f.has_sam_policies,
                "{id}: SAM Policies generate broader roles"
            );
            let role_id = f.role.clone().unwrap_or_else(|| panic!("{id} has no Role"));
            assert!(
                roles.insert(role_id.clone()),
                "{role_id} is shared between functions"
            );
            let role = stack.role(&role_id).unwrap();
            assert_eq!(role.trusted_services, ["lambda.amazonaws.com"], "{role_id}");
            assert!(
                role.managed_policy_arns.is_empty(),
                "{role_id}: managed policies"
            );
            let mut actual = Grants::new();
            for statement in &role.statements {
                assert!(statement.allow, "{role_id}: only Allow statements expected");
                for action in &statement.actions {
                    assert!(!action.contains('*'), "{role_id}: wildcard action {action}");
                    for resource in &statement.resources {
                        assert!(
                            !resource.contains('*') || resource.ends_with("/*"),
                            "{role_id}: wildcard resource {resource} (only object prefixes may end in /*)"
                        );
                        assert!(
                            !resource.ends_with("/*") || resource.starts_with("${Bucket.Arn}/"),
                            "{role_id}: {resource}"
                        );
                        actual.insert((action.clone(), resource.clone()));
                    }
                }
                if statement.actions.iter().any(|a| a == "kms:Decrypt") {
                    let via = statement
                        .condition
                        .as_ref()
                        .and_then(|c| c.get("StringEquals"))
                        .and_then(|c| c.get("kms:ViaService"))
                        .and_then(|v| v.as_str());
                    assert_eq!(
                        via,
                        Some("ssm.us-east-1.amazonaws.com"),
                        "{role_id}: kms:Decrypt only through SSM"
                    );
                }
            }
            let expected = expected_grants(id, extra);
            assert_eq!(
                actual,
                expected,
                "{role_id} with {extra:?}\n  extra grants: {:?}\n  missing grants: {:?}",
                actual.difference(&expected).collect::<Vec<_>>(),
                expected.difference(&actual).collect::<Vec<_>>()
            );
        }
    }
}

// ------------------------------------------------------------------ environment

/// The environment each function gets, as its configuration expects it.
fn expected_environment(function_id: &str, layer: bool) -> BTreeSet<&'static str> {
    let mut vars = BTreeSet::from(["BUCKET_NAME", "LOG_FORMAT", "RUST_LOG"]);
    vars.extend(match function_id {
        WEBHOOK_FUNCTION => vec![
            "INBOUND_QUEUE_URL",
            "WHATSAPP_VERIFY_TOKEN_PARAM",
            "WHATSAPP_APP_SECRET_PARAM",
            "USER_TAG_KEY_PARAM",
            "ALLOWED_SENDERS",
            "WHATSAPP_PHONE_NUMBER_ID",
        ],
        TRANSCRIBER_FUNCTION => vec![
            "INBOUND_QUEUE_URL",
            "REPLY_QUEUE_URL",
            "WHATSAPP_ACCESS_TOKEN_PARAM",
            "GRAPH_API_VERSION",
            "MEDIA_MAX_BYTES",
            "AUDIO_MAX_SECONDS",
            if layer {
                "WHISPER_MODEL_PATH"
            } else {
                "WHISPER_MODEL_S3_KEY"
            },
            "WHISPER_LANGUAGE",
            "WHISPER_THREADS",
            "INBOUND_MAX_RECEIVE_COUNT",
            "LIMIT_MESSAGES_PER_MINUTE",
            "LIMIT_MESSAGES_PER_DAY",
            "LIMIT_AUDIO_MINUTES_PER_DAY",
            "LIMITS_EXEMPT",
            "SPEECH_LANES",
            "INBOUND_MAX_CONCURRENCY",
        ],
        RESPONDER_FUNCTION => vec![
            "REPLY_QUEUE_URL",
            "WHATSAPP_ACCESS_TOKEN_PARAM",
            "GRAPH_API_VERSION",
            "GPT4ALL_URL",
            "GPT4ALL_MODEL",
            "GPT4ALL_API_KEY_PARAM",
            "GPT4ALL_MAX_TOKENS",
            "GPT4ALL_CONTEXT_TOKENS",
            "GPT4ALL_TEMPERATURE",
            "GPT4ALL_TIMEOUT_SECONDS",
            "HISTORY_MAX_TURNS",
            "HISTORY_MAX_CHARS",
            "SYSTEM_PROMPT",
            "ECHO_TRANSCRIPT",
            "REPLY_MODE",
            "SUMMARY",
            "SUMMARY_MIN_SECONDS",
            "KNOWLEDGE",
            "KNOWLEDGE_UNCOVERED",
            "KNOWLEDGE_PASSAGES",
            "KNOWLEDGE_MAX_CHARS",
            "REPLY_MAX_RECEIVE_COUNT",
        ],
        other => panic!("no expectations for {other}"),
    });
    vars
}

/// Variables a function reads that the template leaves unset on purpose.
const LEFT_AT_DEFAULT: [(&str, &str); 9] = [
    (
        "GRAPH_MEDIA_HOSTS",
        "Meta's media domains are always allowed; more only for the emulator",
    ),
    (
        "WEBHOOK_MAX_BODY_BYTES",
        "its default, 4 MiB, is above the largest body Meta sends",
    ),
    (
        "GPT4ALL_TOP_P",
        "the responder's default suits GPT4All's models",
    ),
    (
        "GPT4ALL_RETRIES",
        "the responder's default retry budget fits its timeout",
    ),
    (
        "NORMALIZE_TEST_RECIPIENTS",
        "only for Meta's test numbers, off by default",
    ),
    (
        "GRAPH_API_BASE_URL",
        "points at the Graph API emulator in tests",
    ),
    ("AWS_ENDPOINT_URL", "points the SDK at a local emulator"),
    ("AWS_ENDPOINT_URL_S3", "points the SDK at a local emulator"),
    ("S3_FORCE_PATH_STYLE", "for local emulators"),
];

/// Variables of which one is enough: the whisper model comes from the bucket or a layer.
const ONE_OF: [(&str, &str); 1] = [("WHISPER_MODEL_PATH", "WHISPER_MODEL_S3_KEY")];

/// What `function_id` reads, as its configuration declares it.
fn declared(function_id: &str) -> Vec<Setting> {
    match function_id {
        WEBHOOK_FUNCTION => webhook::config::settings(),
        TRANSCRIBER_FUNCTION => transcriber::config::settings(),
        RESPONDER_FUNCTION => responder::config::settings(),
        other => panic!("no configuration for {other}"),
    }
}

/// Names of the environment variables a function reads: its declared settings, a
/// secret by its `_PARAM` as deployed, families left out (none is deployed).
fn variables_read(function_id: &str) -> BTreeSet<String> {
    declared(function_id)
        .into_iter()
        .filter(|s| s.prefix.is_none())
        .map(|s| s.name.to_owned())
        .collect()
}

#[test]
fn every_variable_the_functions_read_is_set_and_secrets_are_parameter_names() {
    let template = template();
    let mut union = BTreeSet::new();
    for extra in VARIANTS {
        let stack = stack(&template, extra);
        let layer = extra.iter().any(|(n, _)| *n == "WhisperModelLayerArn");
        for id in FUNCTIONS {
            let f = function(&stack, id);
            let set: BTreeSet<&str> = f.environment.keys().map(String::as_str).collect();
            assert_eq!(set, expected_environment(id, layer), "{id} with {extra:?}");
            union.extend(f.environment.keys().cloned());

            let code_uri = f.code_uri.as_deref().unwrap();
            for name in variables_read(id) {
                if LEFT_AT_DEFAULT.iter().any(|(n, _)| *n == name) {
                    continue;
                }
                let alternative = ONE_OF
                    .iter()
                    .find_map(|(a, b)| (*a == name).then_some(*b).or((*b == name).then_some(*a)));
                if alternative.is_some_and(|other| set.contains(other)) {
                    continue;
                }
                let param = format!("{name}_PARAM");
                assert!(
                    set.contains(name.as_str()) || set.contains(param.as_str()),
                    "{id} reads {name} (declared in {code_uri}/src/config.rs) but the template sets neither {name} nor {param}"
                );
            }
            for name in &set {
                if let Some(secret) = name.strip_suffix("_PARAM") {
                    assert!(
                        !set.contains(secret),
                        "{id}: {secret} is set as a plain value"
                    );
                    let value = &f.environment[*name];
                    assert!(
                        value.is_empty() || value.starts_with('/'),
                        "{id}: {name} should be an SSM parameter name, is {value:?}"
                    );
                }
            }
        }
    }
    let listed = [
        "BUCKET_NAME",
        "INBOUND_QUEUE_URL",
        "REPLY_QUEUE_URL",
        "WHATSAPP_VERIFY_TOKEN_PARAM",
        "WHATSAPP_APP_SECRET_PARAM",
        "WHATSAPP_ACCESS_TOKEN_PARAM",
        "GPT4ALL_API_KEY_PARAM",
        "GRAPH_API_VERSION",
        "MEDIA_MAX_BYTES",
        "AUDIO_MAX_SECONDS",
        "WHISPER_MODEL_PATH",
        "WHISPER_MODEL_S3_KEY",
        "WHISPER_LANGUAGE",
        "WHISPER_THREADS",
        "GPT4ALL_URL",
        "GPT4ALL_MODEL",
        "GPT4ALL_MAX_TOKENS",
        "GPT4ALL_CONTEXT_TOKENS",
        "GPT4ALL_TEMPERATURE",
        "GPT4ALL_TIMEOUT_SECONDS",
        "HISTORY_MAX_TURNS",
        "HISTORY_MAX_CHARS",
        "SYSTEM_PROMPT",
        "ECHO_TRANSCRIPT",
        "REPLY_MAX_RECEIVE_COUNT",
        "INBOUND_MAX_RECEIVE_COUNT",
        "ALLOWED_SENDERS",
        "LOG_FORMAT",
        "RUST_LOG",
    ];
    let missing: Vec<_> = listed.iter().filter(|n| !union.contains(**n)).collect();
    assert!(missing.is_empty(), "never set: {missing:?}");
}

#[test]
fn no_secret_is_a_template_parameter() {
    let template = template();
    for (name, parameter) in &template.parameters {
        let secret_like = name.ends_with("Token")
            || [
                "Secret",
                "Password",
                "ApiKey",
                "AccessToken",
                "VerifyToken",
                "TagKey",
            ]
            .iter()
            .any(|w| name.contains(w));
        if secret_like {
            assert!(
                name.ends_with("ParameterName") || name.ends_with("Arn"),
                "{name} looks like a secret: take the name of an SSM SecureString parameter instead"
            );
            let default = parameter
                .default
                .as_ref()
                .and_then(|d| d.as_str())
                .unwrap_or("");
            assert!(default.is_empty() || default.starts_with('/') || default.starts_with("arn:"));
        }
    }
    let stack = stack(&template, &[]);
    assert_eq!(
        stack
            .parameter("VerifyTokenParameterName")
            .unwrap()
            .as_str(),
        Some("/remedios/whatsapp-verify-token")
    );
}

// ------------------------------------------------------------------ bucket, build, API

#[test]
fn the_bucket_is_encrypted_private_tls_only_and_personal_data_expires() {
    let template = template();
    let stack = stack(
        &template,
        &[
            ("MessageRetentionDays", "14"),
            ("ConversationRetentionDays", "30"),
        ],
    );
    let bucket = stack.bucket(BUCKET).unwrap();
    assert_eq!(bucket.encryption.as_deref(), Some("AES256"));
    assert!(
        bucket.public_access_blocked,
        "all four public access blocks"
    );
    assert!(
        bucket.tls_only,
        "a bucket policy must deny requests without TLS"
    );
    assert!(
        !bucket.versioned,
        "old versions would outlive the expiry of personal data"
    );
    assert!(
        bucket.retained_on_delete,
        "deleting the stack must not delete conversations"
    );
    for prefix in [
        "messages/",
        "media/",
        "transcripts/",
        "replies/",
        "quarantine/",
    ] {
        assert_eq!(bucket.expiry_of(prefix), Some(14), "{prefix}");
    }
    assert_eq!(bucket.expiry_of("conversations/"), Some(30));
    assert!(
        bucket
            .lifecycle
            .iter()
            .any(|r| r.prefix.is_none() && r.abort_incomplete_upload_days == Some(1))
    );
}

#[test]
fn functions_are_built_by_cargo_lambda_for_al2023() {
    let template = template();
    let stack = stack(&template, &[]);
    let root = paths::workspace_root();
    let mut seen = Vec::new();
    for id in template.resources_of_type(SERVERLESS_FUNCTION) {
        let f = function(&stack, id);
        seen.push(id.to_owned());
        assert_eq!(f.build_method.as_deref(), Some("rust-cargolambda"), "{id}");
        assert_eq!(f.runtime.as_deref(), Some("provided.al2023"), "{id}");
        assert_eq!(f.handler.as_deref(), Some("bootstrap"), "{id}");
        let expected_arch = if id == TRANSCRIBER_FUNCTION {
            "x86_64"
        } else {
            "arm64"
        };
        assert_eq!(
            f.architectures,
            [expected_arch],
            "{id}: see infra/README.md, Architecture"
        );
        let crate_dir = root.join("infra").join(f.code_uri.as_deref().unwrap());
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap_or_else(|e| {
            panic!(
                "{id}: CodeUri {} has no Cargo.toml: {e}",
                crate_dir.display()
            )
        });
        let binary = f
            .binary
            .as_deref()
            .unwrap_or_else(|| panic!("{id}: BuildProperties.Binary"));
        assert!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "{id}: {} builds no binary {binary}",
            crate_dir.display()
        );
    }
    seen.sort();
    let mut expected = FUNCTIONS.map(str::to_owned).to_vec();
    expected.sort();
    assert_eq!(seen, expected);
}

#[test]
fn the_webhook_answers_get_and_post_on_one_path_whose_url_is_an_output() {
    let template = template();
    let stack = stack(&template, &[]);
    let webhook = function(&stack, WEBHOOK_FUNCTION);
    let routes: BTreeSet<(String, String)> = webhook
        .http_routes()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        routes,
        BTreeSet::from([
            ("GET".into(), "/webhook".into()),
            ("POST".into(), "/webhook".into())
        ])
    );
    assert!(
        webhook
            .events
            .iter()
            .all(|e| matches!(e.source, EventSource::HttpApi(_)))
    );
    let url = stack
        .eval(&template.outputs["WebhookUrl"].value)
        .unwrap()
        .unwrap();
    assert_eq!(
        url.as_str(),
        Some("https://${WebhookApi}.execute-api.us-east-1.amazonaws.com/webhook")
    );
    for output in [
        "BucketName",
        "InboundQueueUrl",
        "ReplyQueueUrl",
        "InboundDeadLetterQueueUrl",
        "ReplyDeadLetterQueueUrl",
    ] {
        assert!(template.outputs.contains_key(output), "output {output}");
    }
    assert!(
        webhook.timeout.unwrap() < Duration::from_secs(30),
        "HTTP APIs give up after 30 s"
    );
}

#[test]
fn every_dead_letter_queue_has_an_alarm_on_its_depth() {
    let template = template();
    let stack = stack(&template, &[]);
    let alarmed: BTreeSet<String> = template
        .resources_of_type("AWS::CloudWatch::Alarm")
        .filter_map(|id| {
            let alarm = stack
                .eval(&template.resources[id].properties)
                .unwrap()
                .unwrap();
            // The others watch the functions' own metrics (the next test).
            (alarm["Namespace"].as_str() == Some("AWS/SQS")).then_some((id, alarm))
        })
        .map(|(id, alarm)| {
            assert_eq!(
                alarm["MetricName"].as_str(),
                Some("ApproximateNumberOfMessagesVisible"),
                "{id}"
            );
            assert_eq!(alarm["Threshold"].as_i64(), Some(1), "{id}");
            let dimension = alarm["Dimensions"][0]["Value"].as_str().unwrap();
            dimension
                .strip_prefix("${")
                .and_then(|d| d.strip_suffix(".QueueName}"))
                .unwrap_or_else(|| panic!("{id}: {dimension}"))
                .to_owned()
        })
        .collect();
    assert_eq!(
        alarmed,
        BTreeSet::from([
            "InboundDeadLetterQueue".into(),
            "ReplyDeadLetterQueue".into()
        ])
    );
}

#[test]
fn cloudwatch_may_publish_to_the_alarm_topic() {
    let template = template();
    let stack = stack(&template, &[("AlarmEmail", "ops@example.com")]);
    let topic = stack
        .eval(&template.resources["AlarmTopic"].properties)
        .unwrap()
        .unwrap();
    let key = topic["KmsMasterKeyId"].as_str().unwrap_or_default();
    assert!(
        !key.starts_with("alias/aws/"),
        "CloudWatch cannot use the AWS-managed key {key}: its alarms would never be delivered"
    );
    let key_id = key
        .strip_prefix("${")
        .and_then(|k| k.strip_suffix('}'))
        .unwrap_or_else(|| panic!("the topic key is one of the template's keys: {key}"));
    let policy = stack
        .eval(&template.resources[key_id].properties["KeyPolicy"])
        .unwrap()
        .unwrap();
    let statements = policy["Statement"].as_sequence().unwrap();
    let cloudwatch = statements
        .iter()
        .find(|s| s["Principal"]["Service"].as_str() == Some("cloudwatch.amazonaws.com"))
        .expect("the key policy names CloudWatch");
    assert_eq!(cloudwatch["Effect"].as_str(), Some("Allow"));
    let actions: Vec<&str> = cloudwatch["Action"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(actions.contains(&"kms:Decrypt"), "{actions:?}");
    assert!(
        actions.iter().any(|a| a.starts_with("kms:GenerateDataKey")),
        "{actions:?}"
    );
}

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

/// Whether `function_id`'s own configuration code accepts `env`.
fn config_accepts(function_id: &str, env: &BTreeMap<String, String>) -> Result<(), String> {
    config_debug(function_id, env).map(drop)
}

#[test]
fn every_number_parameter_a_function_reads_has_exactly_the_range_its_code_accepts() {
    let template = template();
    let stack = stack(&template, &[]);
    let mut checked = Vec::new();
    for id in FUNCTIONS {
        let base = base_environment(&stack, id);
        config_accepts(id, &base).unwrap_or_else(|e| panic!("{id}: the base environment: {e}"));
        let raw = &template.resources[id].properties["Environment"]["Variables"];
        let Some(raw) = raw.as_mapping() else {
            continue;
        };
        for (var, value) in raw {
            let (Some(var), Some(name)) = (var.as_str(), template.referenced_parameter(value))
            else {
                continue;
            };
            let parameter = &template.parameters[name];
            if !parameter.is_number() {
                continue;
            }
            let (Some(min), Some(max)) = (parameter.min_value, parameter.max_value) else {
                panic!("{name} ({id}'s {var}) has no MinValue and MaxValue");
            };
            let with = |v: f64| {
                let mut env = base.clone();
                env.insert(var.to_owned(), format!("{}", v as i64));
                config_accepts(id, &env)
            };
            for v in [min, max] {
                if let Err(e) = with(v) {
                    panic!("{id}: {var}={v} is allowed by {name} but the code refuses it: {e}");
                }
            }
            for v in [min - 1.0, max + 1.0] {
                assert!(
                    with(v).is_err(),
                    "{id}: {var}={v} is outside {name} ({min} to {max}) but the code takes it: \
                     the template and the code disagree on the range"
                );
            }
            checked.push(format!("{id}.{var}"));
        }
    }
    assert!(
        checked.iter().any(|c| c.ends_with("AUDIO_MAX_SECONDS")),
        "the check reached the parameters: {checked:?}"
    );
}

// ------------------------------------------------------------------ the local stack

fn definition(name: &str, visibility: u64, dlq_name: &str) -> QueueDefinition {
    QueueDefinition {
        spec: QueueSpec {
            name: name.into(),
            visibility_timeout: Duration::from_secs(visibility),
            max_receive_count: 5,
        },
        fifo: true,
        content_based_deduplication: false,
        message_retention: Duration::from_secs(345_600),
        dead_letter_name: dlq_name.into(),
        dead_letter_retention: Duration::from_secs(1_209_600),
    }
}

#[test]
fn local_resources_are_the_templates_with_default_parameters() {
    let local = infra::local_resources("remedios-local").unwrap();
    assert_eq!(
        local.inbound,
        definition("remedios-local-inbound", 1800, "remedios-local-inbound-dlq")
    );
    assert_eq!(
        local.reply,
        definition("remedios-local-reply", 720, "remedios-local-reply-dlq")
    );
    assert_eq!(local.inbound.queue_name(), "remedios-local-inbound.fifo");
    assert_eq!(
        local.reply.dead_letter_queue_name(),
        "remedios-local-reply-dlq.fifo"
    );
    assert_eq!(local.transcriber.function, TRANSCRIBER_FUNCTION);
    assert_eq!(local.transcriber.batch_size, 1);
    assert_eq!(local.transcriber.timeout, Duration::from_secs(300));
    assert_eq!(local.transcriber.maximum_concurrency, Some(5));
    assert_eq!(local.responder.function, RESPONDER_FUNCTION);
    assert_eq!(local.responder.timeout, Duration::from_secs(120));
    assert!(
        local.transcriber.report_batch_item_failures && local.responder.report_batch_item_failures
    );
    let rules: BTreeMap<Option<String>, Option<u32>> = local
        .bucket
        .lifecycle
        .iter()
        .map(|r| (r.prefix.clone(), r.expiration_days))
        .collect();
    let expected: BTreeMap<Option<String>, Option<u32>> = [
        (Some("messages/"), Some(30)),
        (Some("media/"), Some(30)),
        (Some("transcripts/"), Some(30)),
        (Some("replies/"), Some(30)),
        (Some("quarantine/"), Some(30)),
        (Some("conversations/"), Some(90)),
        (Some("usage/"), Some(2)),
        (Some("lanes/"), Some(5)),
        (None, None),
    ]
    .into_iter()
    .map(|(p, d)| (p.map(str::to_owned), d))
    .collect();
    assert_eq!(rules, expected);
}

#[tokio::test]
async fn the_local_stack_creates_the_templates_queues_and_bucket_on_moto() {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let local = infra::local_resources("remedios-infra-test").unwrap();
    let moto = Moto::start()
        .await
        .expect("moto starts (scripts/bootstrap.sh installs it)");
    let config = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let s3 = moto::s3_client(&config);
    for definition in [&local.inbound, &local.reply] {
        let pair = moto::create_queues(&sqs, definition).await.unwrap();
        assert!(pair.url.ends_with(&definition.queue_name()), "{}", pair.url);
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&pair.url)
            .attribute_names(A::All)
            .send()
            .await
            .unwrap();
        let attributes = attributes.attributes().unwrap();
        assert_eq!(attributes[&A::FifoQueue], "true");
        assert_eq!(
            attributes[&A::VisibilityTimeout],
            definition.spec.visibility_timeout.as_secs().to_string()
        );
        assert_eq!(attributes[&A::MessageRetentionPeriod], "345600");
        let redrive: serde_json::Value =
            serde_json::from_str(&attributes[&A::RedrivePolicy]).unwrap();
        assert_eq!(redrive["deadLetterTargetArn"], pair.dlq_arn.as_str());
        assert_eq!(redrive["maxReceiveCount"].to_string(), "5");
        let dlq = sqs
            .get_queue_attributes()
            .queue_url(&pair.dlq_url)
            .attribute_names(A::All)
            .send()
            .await
            .unwrap();
        let dlq = dlq.attributes().unwrap();
        assert_eq!(dlq[&A::MessageRetentionPeriod], "1209600");
        assert_eq!(dlq[&A::FifoQueue], "true");
    }

    moto::create_configured_bucket(&s3, "remedios-infra-test", &local.bucket)
        .await
        .unwrap();
    let encryption = s3
        .get_bucket_encryption()
        .bucket("remedios-infra-test")
        .send()
        .await
        .unwrap();
    let algorithm = encryption
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .map(|d| d.sse_algorithm().as_str().to_owned());
    assert_eq!(algorithm.as_deref(), Some("AES256"));
    let block = s3
        .get_public_access_block()
        .bucket("remedios-infra-test")
        .send()
        .await
        .unwrap();
    let block = block.public_access_block_configuration().unwrap();
    assert_eq!(block.block_public_acls(), Some(true));
    assert_eq!(block.restrict_public_buckets(), Some(true));
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket("remedios-infra-test")
        .send()
        .await
        .unwrap();
    let media = lifecycle
        .rules()
        .iter()
        .find(|r| r.id() == Some("expire-media"))
        .expect("the media expiry rule");
    assert_eq!(media.expiration().and_then(|e| e.days()), Some(30));
    assert_eq!(lifecycle.rules().len(), local.bucket.lifecycle.len());
}

// ------------------------------------------------------------------ the README's table

/// One row of the README's configuration table.
#[derive(Debug)]
struct ConfigRow {
    /// The variables it names (`NAME` and `NAME_PARAM` for a secret).
    names: Vec<String>,
    /// Whether the row is a secret's (`NAME` / `_PARAM`).
    secret: bool,
    used_by: Vec<&'static str>,
    /// The code's defaults, one per variable where the row gives a literal.
    defaults: Vec<Option<String>>,
    /// What the template sets, one per variable.
    deployed: Vec<String>,
}

/// Backticked spans of a cell.
fn literals(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn readme_rows() -> Vec<ConfigRow> {
    let readme =
        std::fs::read_to_string(paths::workspace_root().join("README.md")).expect("README.md");
    let header = "| Variable | Used by | Default | Deployed | Meaning |";
    let table = readme
        .split_once(header)
        .expect("the configuration table, with its Default and Deployed columns")
        .1;
    table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            assert!(cells.len() >= 5, "a row of five cells: {line}");
            let mut names = literals(cells[0]);
            let secret = names.len() == 2 && names[1] == "_PARAM";
            if secret {
                names[1] = format!("{}_PARAM", names[0]);
            }
            let used_by = match cells[1] {
                "all" => FUNCTIONS.to_vec(),
                used => FUNCTIONS
                    .into_iter()
                    .filter(|f| used.contains(&infra_function_name(f)))
                    .collect(),
            };
            assert!(!used_by.is_empty(), "no function uses {line}");
            let split = |cell: &str| -> Vec<String> {
                if names.len() == 2 && !secret {
                    cell.split(" / ").map(str::to_owned).collect()
                } else {
                    vec![cell.to_owned()]
                }
            };
            let defaults = split(cells[2])
                .iter()
                .map(|c| {
                    let lits = literals(c);
                    (c.starts_with('`') && lits.len() == 1).then(|| lits[0].clone())
                })
                .collect();
            ConfigRow {
                secret,
                used_by,
                defaults,
                deployed: split(cells[3]),
                names,
            }
        })
        .collect()
}

/// `WebhookFunction` → `webhook`.
fn infra_function_name(id: &str) -> String {
    id.trim_end_matches("Function").to_lowercase()
}

/// What the README's Deployed column must say for `var` of `function_id`, read from the
/// template with default parameters.
fn deployed_cell(template: &Template, stack: &Deployment<'_>, id: &str, var: &String) -> String {
    let raw = &template.resources[id].properties["Environment"]["Variables"];
    let Some(value) = function(stack, id).environment.get(var.as_str()).cloned() else {
        return "not set".into();
    };
    if let Some(name) = raw.get(var).and_then(|v| template.referenced_parameter(v))
        && template.parameters[name].default.is_none()
    {
        return format!("required (`{name}`)");
    }
    if value.contains("${") {
        "from the stack".into()
    } else if value.is_empty() {
        "empty".into()
    } else {
        format!("`{value}`")
    }
}

/// The configuration `function_id` builds from `env`, as its `Debug` text.
fn config_debug(function_id: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let env = remedios_shared::config::Env(
        env.clone()
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
    );
    match function_id {
        WEBHOOK_FUNCTION => webhook::Config::from_env(&env).map(|c| format!("{c:?}")),
        TRANSCRIBER_FUNCTION => transcriber::Config::from_env(&env).map(|c| format!("{c:?}")),
        RESPONDER_FUNCTION => responder::Config::from_env(&env).map(|c| format!("{c:?}")),
        other => panic!("no configuration for {other}"),
    }
    .map_err(|e| e.to_string())
}

/// The README's table is the one list of what the functions read: every variable the
/// template sets is in it, its Deployed column is what the template sets with default
/// parameters, and each literal Default is the code's own (setting the variable to it
/// gives the configuration the function builds without it).
#[test]
fn the_readme_table_gives_the_code_default_and_the_deployed_value_of_every_variable() {
    let template = template();
    let stack = stack(&template, &[]);
    let rows = readme_rows();
    let mut listed: BTreeSet<(&str, String)> = BTreeSet::new();
    let mut defaults_checked = 0;
    for row in &rows {
        for id in &row.used_by {
            let base = base_environment(&stack, id);
            // A secret's Deployed value is its parameter's name: the `_PARAM` variable.
            let shown: Vec<&String> = if row.secret {
                vec![&row.names[1]]
            } else {
                row.names.iter().collect()
            };
            for (i, var) in shown.iter().enumerate() {
                let wanted = deployed_cell(&template, &stack, id, var);
                assert_eq!(
                    row.deployed.get(i).map(String::as_str),
                    Some(wanted.as_str()),
                    "README: the Deployed cell of {var} ({id}) must say what the template sets"
                );
            }
            listed.extend(row.names.iter().map(|var| (*id, var.clone())));
            for (var, default) in row.names.iter().zip(&row.defaults) {
                let Some(default) = default else { continue };
                if ["LOG_FORMAT", "RUST_LOG"].contains(&var.as_str()) {
                    // Read by telemetry::init, not the configuration (its tests cover it).
                    continue;
                }
                let mut unset = base.clone();
                unset.remove(var.as_str());
                if var == "WHISPER_MODEL_PATH" {
                    // The path is read only when no S3 key is given.
                    unset.remove("WHISPER_MODEL_S3_KEY");
                }
                let with = |value: String| {
                    let mut env = unset.clone();
                    env.insert(var.clone(), value);
                    config_debug(id, &env)
                };
                let without =
                    config_debug(id, &unset).unwrap_or_else(|e| panic!("{id} without {var}: {e}"));
                assert_eq!(
                    with(default.clone()),
                    Ok(without.clone()),
                    "README: the Default of {var} ({id}) is `{default}`, but the code's differs"
                );
                assert_ne!(
                    with(format!("{default}9x")),
                    Ok(without),
                    "{id} does not read {var}: the check above proves nothing"
                );
                defaults_checked += 1;
            }
        }
    }
    for id in FUNCTIONS {
        for var in function(&stack, id).environment.keys() {
            assert!(
                listed.contains(&(id, var.clone())),
                "{id} gets {var} from the template, and the README's table does not list it for {}",
                infra_function_name(id)
            );
        }
    }
    assert!(
        defaults_checked >= 15,
        "only {defaults_checked} literal defaults were checked"
    );
}

// ------------------------------------------------------------------ dashboard and alarms

/// A metric a dashboard widget or an alarm names: namespace, name, dimensions.
type NamedMetric = (String, String, BTreeMap<String, String>);

/// The metrics of a dashboard widget's `metrics` rows, `"..."` rows expanded as
/// CloudWatch does (the previous row, its last values replaced by the ones given).
fn widget_metrics(rows: &serde_json::Value) -> Vec<NamedMetric> {
    let mut out = Vec::new();
    let mut previous: Vec<String> = Vec::new();
    for row in rows.as_array().into_iter().flatten() {
        let items: Vec<String> = row
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        if items.is_empty() {
            continue; // An expression (SEARCH) row: checked on its own.
        }
        let full = if items[0] == "..." {
            let given = &items[1..];
            let mut full = previous.clone();
            let keep = full.len().saturating_sub(given.len());
            full.truncate(keep);
            full.extend(given.iter().cloned());
            full
        } else {
            items
        };
        previous = full.clone();
        let dimensions = full[2..]
            .chunks(2)
            .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
            .collect();
        out.push((full[0].clone(), full[1].clone(), dimensions));
    }
    out
}

/// A Remedios metric is one the code writes, with the code's exact dimension set and the
/// function it names.
fn assert_written_by_the_code(what: &str, (namespace, name, dimensions): &NamedMetric) {
    if namespace != remedios_shared::metrics::NAMESPACE {
        return;
    }
    let function = dimensions
        .get("Function")
        .map(String::as_str)
        .unwrap_or_default();
    let line = remedios_shared::metrics::line_of(function, name)
        .unwrap_or_else(|| panic!("{what}: {function} writes no {name}: {dimensions:?}"));
    let keys: Vec<&str> = dimensions.keys().map(String::as_str).collect();
    let mut wanted = line.dimensions.to_vec();
    wanted.sort_unstable();
    assert_eq!(
        keys, wanted,
        "{what}: {name} is written with exactly these dimensions"
    );
}

#[test]
fn the_dashboard_and_the_alarms_name_only_metrics_the_code_writes() {
    let template = template();
    let stack = stack(&template, &[]);
    let body = stack
        .eval(&template.resources["Dashboard"].properties["DashboardBody"])
        .expect("the dashboard body evaluates")
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("a dashboard body");
    let body: serde_json::Value = serde_json::from_str(&body).expect("the dashboard body is JSON");
    let mut ours = 0;
    for widget in body["widgets"].as_array().expect("widgets") {
        let title = widget["properties"]["title"].as_str().unwrap_or("a widget");
        let rows = &widget["properties"]["metrics"];
        for metric in widget_metrics(rows) {
            assert_written_by_the_code(title, &metric);
            ours += usize::from(metric.0 == remedios_shared::metrics::NAMESPACE);
        }
        for row in rows.as_array().into_iter().flatten() {
            if let Some(search) = row[0]["expression"].as_str() {
                // SEARCH('{Namespace,Dim,Dim} MetricName="Name"', ...): the schema has a
                // line with that name and exactly those dimensions.
                let schema: Vec<&str> = search
                    .split('{')
                    .nth(1)
                    .and_then(|r| r.split('}').next())
                    .expect("a SEARCH names its dimension schema")
                    .split(',')
                    .map(str::trim)
                    .collect();
                let name = search
                    .split("MetricName=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .expect("a SEARCH names its metric");
                assert_eq!(schema[0], remedios_shared::metrics::NAMESPACE, "{title}");
                let mut wanted = schema[1..].to_vec();
                wanted.sort_unstable();
                assert!(
                    remedios_shared::metrics::SCHEMA.iter().any(|line| {
                        let mut dimensions = line.dimensions.to_vec();
                        dimensions.sort_unstable();
                        line.metrics.contains(&name) && dimensions == wanted
                    }),
                    "{title}: the code writes no {name} with dimensions {wanted:?}"
                );
                ours += 1;
            }
        }
    }
    assert!(ours >= 8, "the dashboard shows our own figures ({ours})");

    let mut alarms = 0;
    for (id, resource) in &template.resources {
        if resource.kind != "AWS::CloudWatch::Alarm" {
            continue;
        }
        let properties = stack
            .eval(&resource.properties)
            .expect("the alarm evaluates")
            .expect("alarm properties");
        let mut named: Vec<NamedMetric> = Vec::new();
        let dims = |v: &serde_norway::Value| -> BTreeMap<String, String> {
            v.as_sequence()
                .into_iter()
                .flatten()
                .map(|d| {
                    (
                        d["Name"].as_str().unwrap_or_default().to_owned(),
                        d["Value"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        };
        if let Some(name) = properties["MetricName"].as_str() {
            named.push((
                properties["Namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                name.to_owned(),
                dims(&properties["Dimensions"]),
            ));
        }
        for m in properties["Metrics"].as_sequence().into_iter().flatten() {
            let metric = &m["MetricStat"]["Metric"];
            if let Some(name) = metric["MetricName"].as_str() {
                named.push((
                    metric["Namespace"].as_str().unwrap_or_default().to_owned(),
                    name.to_owned(),
                    dims(&metric["Dimensions"]),
                ));
            }
        }
        assert!(!named.is_empty(), "{id} names a metric");
        for metric in &named {
            assert_written_by_the_code(id, metric);
        }
        // Every alarm reaches the (publishable) alarm topic when an e-mail is set.
        let topic = stack_with_email_actions(&template, id);
        assert!(topic, "{id} notifies the alarm topic");
        alarms += 1;
    }
    assert!(
        alarms >= 5,
        "dead letters, slow answers, apologies, the model host down: {alarms} alarms"
    );
}

/// Whether alarm `id` sends to the alarm topic in a stack with an alarm e-mail.
fn stack_with_email_actions(template: &Template, id: &str) -> bool {
    let stack = stack(template, &[("AlarmEmail", "ops@example.com")]);
    let actions = stack
        .eval(&template.resources[id].properties["AlarmActions"])
        .expect("alarm actions evaluate")
        .unwrap_or_default();
    actions.as_sequence().is_some_and(|a| {
        a.iter()
            .any(|t| t.as_str().is_some_and(|t| t.contains("AlarmTopic")))
    })
}

/// The README's cost estimate is worked out for the template's default sizes: its table of
/// what it assumes (memory, architecture, SQS batch size per function) says what the
/// template deploys, so a change of default shows up as a failing test, not a wrong bill.
#[test]
fn the_cost_estimate_assumes_the_templates_default_sizes() {
    let readme =
        std::fs::read_to_string(paths::workspace_root().join("README.md")).expect("README.md");
    let header = "| Function | Memory | Architecture | SQS batch size |";
    let table = readme
        .split_once(header)
        .expect("the cost estimate's table of assumed sizes")
        .1;
    let template = template();
    let stack = stack(&template, &[]);
    let mut checked = 0;
    for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`'))
            .collect();
        let id = match cells[0] {
            "webhook" => "WebhookFunction",
            "transcriber" => "TranscriberFunction",
            "responder" => "ResponderFunction",
            other => panic!("README cost table: unknown function {other}"),
        };
        let properties = stack
            .eval(&template.resources[id].properties)
            .expect("the function's properties evaluate")
            .expect("properties");
        let memory = properties["MemorySize"]
            .as_u64()
            .or_else(|| {
                properties["MemorySize"]
                    .as_str()
                    .and_then(|m| m.parse().ok())
            })
            .expect("a memory size");
        assert_eq!(cells[1], format!("{memory} MB"), "{id}: memory");
        assert_eq!(
            Some(cells[2]),
            properties["Architectures"][0].as_str(),
            "{id}: architecture"
        );
        let batch = properties["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
            .find(|(_, e)| e["Type"].as_str() == Some("SQS"))
            .and_then(|(_, e)| e["Properties"]["BatchSize"].as_u64())
            .map(|b| b.to_string())
            .unwrap_or_else(|| "none".to_owned());
        assert_eq!(cells[3], batch, "{id}: SQS batch size");
        checked += 1;
    }
    assert_eq!(checked, 3, "one row per function");
}

/// With the template's default parameters, the responder's prompt fits the host's
/// context (`Gpt4AllContextTokens`) with the answer: the system prompt, a question cut to
/// its bound and the passages of the material, with room left for history; the history
/// sent is cut to what is left (`Conversation::recent_messages`).
#[test]
fn the_templates_default_prompt_fits_the_hosts_default_context() {
    let template = template();
    let stack = stack(&template, &[]);
    let mut env = base_environment(&stack, RESPONDER_FUNCTION);
    env.insert("GPT4ALL_API_KEY".into(), "k".into());
    env.remove("GPT4ALL_API_KEY_PARAM");
    let env =
        remedios_shared::config::Env(env.into_iter().collect::<std::collections::HashMap<_, _>>());
    let config = responder::Config::from_env(&env).expect("the template's configuration");
    let model = &config.model;
    assert_eq!(model.context_tokens, 2048, "GPT4All's usual context");
    let knowledge = config.behaviour.knowledge.max_chars;
    let system = config.behaviour.system_prompt.chars().count();
    let worst = system + responder::decision::QUESTION_MAX_CHARS + knowledge;
    let room = model.prompt_chars();
    assert!(
        system + responder::decision::QUESTION_MAX_CHARS < room,
        "a question cut to its bound fits with the system prompt ({room} characters of prompt)"
    );
    assert!(
        system + 500 + knowledge + 1000 < room,
        "an everyday question, its passages and some history fit ({room} characters)"
    );
    eprintln!(
        "prompt room {room} characters; the longest question with passages takes {worst}: \
         longer ones are asked again without passages"
    );
}

/// `remedios up` hands the functions every variable they declare: passed on from the
/// shell when it is the operator's, set by the stack itself when the deployment sets it,
/// or named as making no sense locally. A setting missing from all three would be
/// silently ignored (`HISTORY_MAX_CHARS=8000 remedios up` once was).
#[test]
fn every_declared_variable_reaches_the_functions_under_remedios_up() {
    use remedios_local::stack::{NOT_LOCAL, Options, SET_BY_STACK, function_settings, passes};
    let settings = function_settings();
    for s in &settings {
        let name = match s.prefix {
            Some(prefix) => format!("{prefix}RESET_DONE_ES"),
            None => s.name.to_owned(),
        };
        match s.origin {
            Origin::Operator | Origin::Secret if NOT_LOCAL.contains(&s.name) => {
                assert!(
                    !passes(&name),
                    "{name} makes no sense locally, yet is passed on"
                )
            }
            Origin::Operator | Origin::Secret => {
                let given = [(name.clone(), "a value".to_owned())];
                assert_eq!(
                    Options::passed(given.clone()),
                    BTreeMap::from(given),
                    "`{name}=... remedios up` must reach the functions"
                );
            }
            Origin::Deployment => assert!(
                SET_BY_STACK.contains(&s.name) || s.name == "AWS_ENDPOINT_URL_S3",
                "{name} is set by the deployment, and the local stack does not set it"
            ),
        }
    }
    for set in SET_BY_STACK {
        assert!(
            !passes(set),
            "{set} is the stack's own: the shell must not override it"
        );
    }
    assert!(!passes("HOME") && !passes("AWS_ACCESS_KEY_ID"));
    assert!(settings.len() > 50, "declared: {}", settings.len());
}

/// The README's configuration table and the declarations are the same list: every row
/// is a declared variable and every declared variable has a row, with the declared
/// default where the row gives a literal one.
#[test]
fn the_readme_table_lists_exactly_the_declared_variables_with_their_defaults() {
    let mut by_name: BTreeMap<String, (Setting, BTreeSet<&str>)> = BTreeMap::new();
    for id in FUNCTIONS {
        for s in declared(id) {
            by_name
                .entry(s.name.to_owned())
                .or_insert_with(|| (s.clone(), BTreeSet::new()))
                .1
                .insert(id);
        }
    }
    let mut documented = BTreeSet::new();
    for row in readme_rows() {
        for (i, name) in row.names.iter().enumerate() {
            if row.secret && i == 1 {
                continue;
            }
            let (setting, readers) = by_name
                .get(name)
                .unwrap_or_else(|| panic!("README documents {name}, which no function declares"));
            for id in &row.used_by {
                assert!(readers.contains(id), "README: {id} does not read {name}");
            }
            if let (Some(Some(readme)), Some(code)) = (row.defaults.get(i), &setting.default) {
                let same = readme == code
                    || readme.parse::<f64>().ok() == code.parse::<f64>().ok()
                        && readme.parse::<f64>().is_ok()
                    || flag(readme).is_some() && flag(readme) == flag(code);
                assert!(
                    same,
                    "README: {name}'s default is `{readme}`, declared `{code}`"
                );
            }
            documented.insert(name.clone());
        }
    }
    let undocumented: Vec<&String> = by_name
        .keys()
        .filter(|n| !documented.contains(*n) && !EMULATOR_ONLY.contains(&n.as_str()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "declared but not in the README's table: {undocumented:?}"
    );
}

/// Settings only emulators use, which the README's table leaves to the development notes.
const EMULATOR_ONLY: [&str; 3] = [
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "S3_FORCE_PATH_STYLE",
];

/// A flag's value in any of its spellings.
fn flag(text: &str) -> Option<bool> {
    match text {
        "true" | "on" | "yes" | "1" => Some(true),
        "false" | "off" | "no" | "0" => Some(false),
        _ => None,
    }
}
