//! The local AWS emulator: `moto_server` from the project venv, on a free loopback
//! port, with SQS FIFO queues and the S3 bucket created as the template declares.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::types::QueueAttributeName;
use thiserror::Error;
use tokio::process::{Child, Command};

use crate::paths;
use crate::process::free_port;

/// Why the emulator could not be started or set up.
#[derive(Debug, Error)]
pub enum MotoError {
    #[error(
        "moto_server not found at {0}: run `scripts/bootstrap.sh` to create the venv with moto[server]"
    )]
    Missing(PathBuf),
    #[error("could not start moto_server: {0}")]
    Spawn(std::io::Error),
    #[error("moto_server did not answer on {0} within {1:?}")]
    NotReady(String, Duration),
    #[error("moto_server exited early with {0}")]
    Exited(std::process::ExitStatus),
    #[error("emulator setup failed: {0}")]
    Setup(String),
}

/// A running `moto_server`; killed when dropped.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    endpoint: String,
    port: u16,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub async fn start() -> Result<Self, MotoError> {
        Self::start_on(free_port().map_err(MotoError::Spawn)?).await
    }

    /// Starts moto on `port` (the local stack uses a fixed one).
    pub async fn start_on(port: u16) -> Result<Self, MotoError> {
        let exe = paths::venv_bin("moto_server");
        if !exe.exists() {
            return Err(MotoError::Missing(exe));
        }
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(MotoError::Spawn)?;
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        };
        moto.wait_ready(Duration::from_secs(30)).await?;
        Ok(moto)
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<(), MotoError> {
        let started = Instant::now();
        let client = reqwest::Client::new();
        let url = format!("{}/moto-api/", self.endpoint);
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(MotoError::Exited(status));
            }
            if client.get(&url).send().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(MotoError::NotReady(self.endpoint.clone(), limit))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// An SDK configuration that talks to this emulator.
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.endpoint).await
    }

    /// Stops the emulator (as in an outage); `restart` brings it back, empty.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts moto again on the same port (its state starts empty).
    pub async fn restart(&mut self) -> Result<(), MotoError> {
        self.stop().await;
        let fresh = Moto::start_on(self.port).await?;
        *self = fresh;
        Ok(())
    }
}

/// An SDK configuration for an emulator at `endpoint`, with dummy credentials.
pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "remedios-local",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// A FIFO queue and its dead-letter queue, as created on the emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePair {
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
    pub dlq_arn: String,
}

/// Settings of a FIFO queue to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// Without `.fifo`.
    pub name: String,
    pub visibility_timeout: Duration,
    pub max_receive_count: u32,
}

/// Creates a FIFO queue with its FIFO dead-letter queue and redrive policy.
pub async fn create_queue_pair(
    sqs: &aws_sdk_sqs::Client,
    spec: &QueueSpec,
) -> Result<QueuePair, MotoError> {
    let setup = |e: &dyn std::fmt::Display| MotoError::Setup(e.to_string());
    let dlq_url = sqs
        .create_queue()
        .queue_name(format!("{}-dlq.fifo", spec.name))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .map_err(|e| setup(&aws_sdk_sqs::error::DisplayErrorContext(e)))?
        .queue_url
        .unwrap_or_default();
    let dlq_arn = queue_arn(sqs, &dlq_url).await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": spec.max_receive_count,
    })
    .to_string();
    let url = sqs
        .create_queue()
        .queue_name(format!("{}.fifo", spec.name))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            spec.visibility_timeout.as_secs().to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .map_err(|e| setup(&aws_sdk_sqs::error::DisplayErrorContext(e)))?
        .queue_url
        .unwrap_or_default();
    let arn = queue_arn(sqs, &url).await?;
    Ok(QueuePair {
        url,
        arn,
        dlq_url,
        dlq_arn,
    })
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, MotoError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| MotoError::Setup(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| MotoError::Setup(format!("queue {url} has no ARN")))
}

/// Creates a bucket (no error when it exists already).
pub async fn create_bucket(s3: &aws_sdk_s3::Client, name: &str) -> Result<(), MotoError> {
    match s3.create_bucket().bucket(name).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(MotoError::Setup(
            aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
        )),
    }
}
