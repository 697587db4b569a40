//! Logging: JSON lines for CloudWatch by default, readable text for local runs.
//!
//! - `LOG_FORMAT=text` switches to human-readable lines (the local stack sets it).
//! - The level comes from `RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else `info`.
//!
//! What we log: ids, counts, timings and error codes. Never message text, transcripts,
//! tokens or phone numbers at info level or above: user identities appear as their
//! pseudonymous [`crate::user::UserTag`].

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .ok()
                .map(|l| l.to_lowercase())
        })
        .map(EnvFilter::new)
        .unwrap_or_else(|| EnvFilter::new("info"));
    let text = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stdout);
    let result = if text {
        builder.compact().try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
    };
    // A second init (tests) is harmless.
    drop(result);
}

/// Logs why the function cannot start, as one line, and exits. For cold-start
/// failures: a missing variable, an unreadable secret, a missing model.
pub fn fatal(error: &dyn std::fmt::Display) -> ! {
    tracing::error!(error = %error, "cannot start");
    std::process::exit(1)
}
