//! The built `webhook` binary at cold start: a missing or malformed setting stops it
//! with exit code 1 and one log line that names the variable, before it asks the
//! Lambda Runtime API for any event.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use remedios_template::WEBHOOK_FUNCTION;
use remedios_testkit::iam;
use remedios_testkit::moto::Moto;
use serde_json::Value;

/// What the process printed and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the webhook binary with exactly `vars` as its environment.
fn run(vars: &[(&str, &str)]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_webhook"))
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the webhook binary");
    let started = Instant::now();
    while child.try_wait().expect("wait for the webhook").is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the webhook did not stop within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect the output");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts the run stopped with 1 and exactly one line, and returns that line.
fn one_fatal_line(run: &Run) -> String {
    assert_eq!(
        run.code,
        Some(1),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert_eq!(run.stderr, "", "nothing on stderr");
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "exactly one line: {:?}", run.stdout);
    lines[0].to_owned()
}

/// The `error` field of a JSON log line (the default format, as in Lambda).
fn json_error(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "ERROR", "{line}");
    assert_eq!(v["message"], "cannot start", "{line}");
    v["error"].as_str().expect("an error field").to_owned()
}

const COMPLETE: [(&str, &str); 5] = [
    ("WHATSAPP_VERIFY_TOKEN", "vt"),
    ("WHATSAPP_APP_SECRET", "secret"),
    ("USER_TAG_KEY", "startup-test-key-startup-test-key"),
    (
        "INBOUND_QUEUE_URL",
        "http://127.0.0.1:9/123456789012/q.fifo",
    ),
    ("BUCKET_NAME", "b"),
];

fn without(name: &str) -> Vec<(&'static str, &'static str)> {
    COMPLETE
        .iter()
        .copied()
        .filter(|(k, _)| *k != name)
        .collect()
}

#[test]
fn an_empty_environment_stops_with_one_line_naming_the_first_missing_variable() {
    let line = one_fatal_line(&run(&[]));
    let error = json_error(&line);
    assert!(
        error.starts_with("configuration error: WHATSAPP_VERIFY_TOKEN is not set:"),
        "{error}"
    );
    assert!(error.contains("WHATSAPP_VERIFY_TOKEN_PARAM"), "{error}");
}

#[test]
fn each_required_variable_is_named_when_it_alone_is_missing() {
    for name in COMPLETE.map(|(k, _)| k) {
        let error = json_error(&one_fatal_line(&run(&without(name))));
        assert!(
            error.starts_with(&format!("configuration error: {name} is not set")),
            "{name}: {error}"
        );
    }
}

#[test]
fn a_user_tag_key_too_short_to_be_secret_stops_the_cold_start() {
    let mut vars = without("USER_TAG_KEY");
    // As in Lambda, where the region is always set.
    vars.extend([("USER_TAG_KEY", "secret"), ("AWS_REGION", "us-east-1")]);
    let error = json_error(&one_fatal_line(&run(&vars)));
    assert_eq!(
        error,
        "USER_TAG_KEY has 6 characters; it needs at least 32 random ones (for example `openssl rand -hex 32`)"
    );
}

#[test]
fn malformed_values_are_named_with_the_problem() {
    let mut vars = COMPLETE.to_vec();
    vars.push(("WEBHOOK_MAX_BODY_BYTES", "1000"));
    let error = json_error(&one_fatal_line(&run(&vars)));
    assert_eq!(
        error,
        "configuration error: WEBHOOK_MAX_BODY_BYTES is 1000, outside the allowed range 3145728 to 67108864"
    );

    let mut vars = COMPLETE.to_vec();
    vars.push(("WHATSAPP_APP_SECRET_PARAM", "/remedios/app-secret"));
    let error = json_error(&one_fatal_line(&run(&vars)));
    assert!(
        error.starts_with(
            "configuration error: WHATSAPP_APP_SECRET and WHATSAPP_APP_SECRET_PARAM are both set"
        ),
        "{error}"
    );
}

#[test]
fn the_line_is_readable_text_when_asked_for() {
    let mut vars = without("BUCKET_NAME");
    vars.push(("LOG_FORMAT", "text"));
    let line = one_fatal_line(&run(&vars));
    assert!(
        line.contains("cannot start")
            && line.contains("configuration error: BUCKET_NAME is not set"),
        "{line}"
    );
    assert!(
        serde_json::from_str::<Value>(&line).is_err(),
        "not JSON: {line}"
    );
}

#[tokio::test]
async fn a_missing_ssm_parameter_is_named() {
    let moto = Moto::start_enforcing(vec![common::principal()])
        .await
        .unwrap_or_else(|e| panic!("cannot start moto: {e} (run scripts/bootstrap.sh)"));
    let endpoint = moto.endpoint().to_owned();
    // The binary signs as the webhook's role, as in Lambda.
    let key = moto
        .access_key(&iam::principal_name(WEBHOOK_FUNCTION))
        .unwrap_or_else(|e| panic!("{e}"))
        .clone();
    let run = tokio::task::spawn_blocking(move || {
        let mut vars: Vec<(&str, &str)> = without("WHATSAPP_APP_SECRET").into_iter().collect();
        vars.extend([
            ("WHATSAPP_APP_SECRET_PARAM", "/remedios/missing-app-secret"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", key.id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", key.secret.as_str()),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ]);
        run(&vars)
    })
    .await
    .unwrap();
    let error = json_error(&one_fatal_line(&run));
    assert!(
        error.contains("/remedios/missing-app-secret") && error.contains("does not exist"),
        "{error}"
    );
}
