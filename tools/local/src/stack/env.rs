//! The functions' environment under `remedios up`.

use std::collections::BTreeMap;
use std::path::Path;

use remedios_emulators::iam;

use super::build::default_whisper_model;
use super::credentials::{CREDENTIAL_VARS, config_file, secret_values};
use super::{Options, StackInfo};

/// The functions' environment: where the emulators are, the queues and bucket, the
/// user's settings over our defaults.
pub(super) fn function_env(
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
    // Voice replies with the engine and the English voice scripts/bootstrap.sh installed
    // (what the Lambda layer holds at /opt/voice); VOICES or VOICE_ENGINE_DIR set by the
    // user win (the loop below).
    if let Ok(voice) = remedios_emulators::paths::voice_paths() {
        set("VOICE_ENGINE_DIR", &voice.engine_dir.display().to_string());
        set("VOICES", &format!("en={}", voice.english_voice.display()));
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
    // What Lambda exports from the template's ApplicationLogLevel (LogLevel), for a plain
    // level; a finer RUST_LOG filter stays a local convenience.
    if let Some(level) = env
        .get("RUST_LOG")
        .filter(|l| ["trace", "debug", "info", "warn", "error"].contains(&l.as_str()))
    {
        let level = level.to_uppercase();
        env.insert("AWS_LAMBDA_LOG_LEVEL".to_owned(), level);
    }
    env
}
