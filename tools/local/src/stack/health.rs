//! Whether every part of the stack answers: the status table of `remedios status`.

use std::time::{Duration, Instant};

use remedios_emulators::graph::EmulatorClient;

use super::supervise::restart_note;
use super::{LocalStack, StackError};
use crate::pump::HttpInvoker;

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

fn queue_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Invokes an SQS function with an empty batch: it answers once it has started
/// (configuration read, clients built).
pub(super) async fn probe_sqs_function(
    invoker: &HttpInvoker,
    function: &str,
) -> Result<(), String> {
    use crate::pump::Invoke;
    let event = aws_lambda_events::event::sqs::SqsEvent::default();
    invoker
        .invoke(function, &event, Duration::from_secs(60))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

impl LocalStack {
    pub(super) async fn wait_healthy(&self, limit: Duration) -> Result<(), StackError> {
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
            healthy: errors.is_empty(),
            detail: if errors.is_empty() {
                format!("{batches} batches so far")
            } else {
                errors.join("; ")
            },
        });
        rows
    }
}
