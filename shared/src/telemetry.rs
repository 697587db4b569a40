//! Logging, as the Lambda runtime does it: JSON lines for CloudWatch by default, each
//! carrying the runtime's `requestId`, and Lambda's advanced logging controls honoured.
//!
//! - Format: `AWS_LAMBDA_LOG_FORMAT` (`JSON` or `Text`, set by Lambda's logging
//!   controls) first, then `LOG_FORMAT=text` (the local stack sets it), else JSON.
//! - Level: `AWS_LAMBDA_LOG_LEVEL` first, then `RUST_LOG`, else `info`.
//! - Every line of an invocation carries the span the runtime opens for it
//!   (`Lambda runtime invoke`, with `requestId` and `xrayTraceId`), in `spans`, so the
//!   lines of one invocation can be found together.
//!
//! What we log: ids, counts, timings and error codes. Never message text, transcripts,
//! tokens or phone numbers at info level or above: user identities appear as their
//! pseudonymous [`crate::user::UserTag`].

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{Choice, Setting};

/// The log format when Lambda's logging controls do not set it.
pub const LOG_FORMAT: Choice = Choice {
    name: "LOG_FORMAT",
    default: "json",
    doc: "`text` for people, else JSON lines (Lambda's `AWS_LAMBDA_LOG_FORMAT` wins)",
};
/// The log filter when Lambda's logging controls do not set one.
pub const RUST_LOG: Choice = Choice {
    name: "RUST_LOG",
    default: "info",
    doc: "the log filter (Lambda's `AWS_LAMBDA_LOG_LEVEL` wins)",
};

/// What [`LogSettings::from_vars`] reads besides Lambda's own variables.
pub fn settings() -> Vec<Setting> {
    vec![LOG_FORMAT.setting(), RUST_LOG.setting()]
}

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object a line (CloudWatch).
    Json,
    /// Compact text (people).
    Text,
}

/// The logging settings from the environment, Lambda's own variables first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: Format,
    /// An `EnvFilter` directive, such as `info` or `responder=debug`.
    pub filter: String,
}

impl LogSettings {
    /// Reads the settings through `var` (the process environment in [`init`]).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let format = match var("AWS_LAMBDA_LOG_FORMAT").or_else(|| var(LOG_FORMAT.name)) {
            Some(f) if f.trim().eq_ignore_ascii_case("text") => Format::Text,
            _ => Format::Json,
        };
        let filter = var("AWS_LAMBDA_LOG_LEVEL")
            .map(|l| l.trim().to_lowercase())
            .or_else(|| var(RUST_LOG.name))
            .filter(|f| !f.trim().is_empty())
            .unwrap_or_else(|| RUST_LOG.default.to_owned());
        LogSettings { format, filter }
    }
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init() {
    let settings = LogSettings::from_vars(|name| std::env::var(name).ok());
    // A second init (tests) is harmless.
    drop(try_init(&settings, std::io::stdout));
}

/// Installs a subscriber with `settings` writing to `writer`; fails if one is installed.
pub fn try_init<W>(settings: &LogSettings, writer: W) -> Result<(), impl std::error::Error>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing::subscriber::set_global_default(subscriber(settings, writer))
}

/// The subscriber [`init`] installs, for `writer`.
pub fn subscriber<W>(
    settings: &LogSettings,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .with_writer(writer);
    match settings.format {
        Format::Text => Box::new(builder.compact().finish()),
        Format::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .finish(),
        ),
    }
}

/// Logs why the function cannot start, as one line, and exits. For cold-start
/// failures: a missing variable, an unreadable secret, a missing model.
pub fn fatal(error: &dyn std::fmt::Display) -> ! {
    tracing::error!(error = %error, "cannot start");
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn lambdas_logging_controls_come_first() {
        let defaults = LogSettings::from_vars(vars(&[]));
        assert_eq!(defaults.format, Format::Json);
        assert_eq!(defaults.filter, "info");
        let lambda = LogSettings::from_vars(vars(&[
            ("AWS_LAMBDA_LOG_FORMAT", "Text"),
            ("LOG_FORMAT", "json"),
            ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
            ("RUST_LOG", "warn"),
        ]));
        assert_eq!(lambda.format, Format::Text);
        assert_eq!(lambda.filter, "debug");
        let local = LogSettings::from_vars(vars(&[("LOG_FORMAT", "text"), ("RUST_LOG", "warn")]));
        assert_eq!(local.format, Format::Text);
        assert_eq!(local.filter, "warn");
        let json = LogSettings::from_vars(vars(&[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("LOG_FORMAT", "text"),
        ]));
        assert_eq!(json.format, Format::Json);
    }

    #[test]
    fn every_json_line_of_an_invocation_carries_the_request_id() {
        let lines = Lines::default();
        let writer = {
            let lines = lines.clone();
            move || lines.clone()
        };
        let settings = LogSettings::from_vars(vars(&[]));
        tracing::subscriber::with_default(subscriber(&settings, writer), || {
            // The span lambda_runtime opens around each invocation.
            let invoke = tracing::info_span!(
                "Lambda runtime invoke",
                requestId = "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
                xrayTraceId = "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700"
            );
            let _entered = invoke.enter();
            let inner = tracing::info_span!("record", sqs_message_id = "m-1");
            let _inner = inner.enter();
            tracing::info!(outcome = "forwarded", "a line from the handler");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["message"], "a line from the handler");
        assert_eq!(
            line["spans"][0]["requestId"],
            "8476a536-e9f4-11e8-9739-2dfe598c3fcd"
        );
        assert_eq!(line["spans"][1]["sqs_message_id"], "m-1");
    }
}
