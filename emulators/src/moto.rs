//! The local AWS emulator: `moto_server` from the project venv, on a free loopback
//! port, with SQS FIFO queues and the S3 bucket created as the template declares.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::types::QueueAttributeName;
use thiserror::Error;
use tokio::process::{Child, Command};

use remedios_template::BucketSettings;
/// The queues moto creates are described by the template's types.
pub use remedios_template::{QueueDefinition, QueueSpec};

use crate::iam::{self, AccessKey, Principal};
use crate::paths;
use crate::ports::free_port;

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

/// `moto_server` with the clock of its SQS model made fast (same values).
const MOTO_SERVER: &str = include_str!("moto_server.py");

/// A running `moto_server`; killed when dropped.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    endpoint: String,
    port: u16,
    /// With IAM enforced ([`Moto::start_enforcing`]): the principals and their keys.
    principals: Vec<Principal>,
    keys: BTreeMap<String, AccessKey>,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub async fn start() -> Result<Self, MotoError> {
        Self::start_on(free_port().map_err(MotoError::Spawn)?).await
    }

    /// Starts moto with IAM enforced as AWS does ([`crate::iam`]): an admin user for the
    /// setup ([`Moto::sdk_config`]) and one user per `principals`
    /// ([`Moto::sdk_config_as`]); every other request is refused.
    pub async fn start_enforcing(principals: Vec<Principal>) -> Result<Self, MotoError> {
        Self::start_enforcing_on(free_port().map_err(MotoError::Spawn)?, principals).await
    }

    /// [`Moto::start_enforcing`] on `port`.
    pub async fn start_enforcing_on(
        port: u16,
        principals: Vec<Principal>,
    ) -> Result<Self, MotoError> {
        let mut all = vec![Principal::admin()];
        all.extend(principals);
        // Exactly the requests that create the principals go unauthenticated.
        let mut moto = Self::spawn(port, Some(3 * all.len()), None).await?;
        let client = reqwest::Client::new();
        for principal in &all {
            let mut key = None;
            for form in iam::creation_requests(principal) {
                let answer = client
                    .post(&moto.endpoint)
                    .header(
                        "Authorization",
                        "AWS4-HMAC-SHA256 Credential=setup/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
                    )
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(
                        url::form_urlencoded::Serializer::new(String::new())
                            .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
                            .append_pair("Version", "2010-05-08")
                            .finish(),
                    )
                    .send()
                    .await
                    .map_err(|e| MotoError::Setup(format!("IAM setup of {}: {e}", principal.name)))?;
                let status = answer.status();
                let text = answer.text().await.unwrap_or_default();
                if !status.is_success() {
                    return Err(MotoError::Setup(format!(
                        "IAM setup of {} answered {status}: {text}",
                        principal.name
                    )));
                }
                key = iam::access_key_of(&text).or(key);
            }
            let key = key.ok_or_else(|| {
                MotoError::Setup(format!(
                    "no access key for {} in moto's answer",
                    principal.name
                ))
            })?;
            moto.keys.insert(principal.name.clone(), key);
        }
        moto.principals = all.into_iter().skip(1).collect();
        Ok(moto)
    }

    /// Starts moto on `port` (the local stack uses a fixed one).
    pub async fn start_on(port: u16) -> Result<Self, MotoError> {
        Self::spawn(port, None, None).await
    }

    /// Starts moto for an account whose Lambda concurrency quota is `concurrency` (as
    /// GetAccountSettings answers; new accounts often have 10).
    pub async fn start_with_lambda_concurrency(concurrency: u32) -> Result<Self, MotoError> {
        Self::spawn(
            free_port().map_err(MotoError::Spawn)?,
            None,
            Some(concurrency),
        )
        .await
    }

    async fn spawn(
        port: u16,
        no_auth_actions: Option<usize>,
        lambda_concurrency: Option<u32>,
    ) -> Result<Self, MotoError> {
        let exe = paths::venv_bin("moto_server");
        if !exe.exists() {
            return Err(MotoError::Missing(exe));
        }
        // moto's own server, with a faster clock for its SQS model (see the script).
        let mut command = Command::new(paths::venv_bin("python"));
        command.args(["-c", MOTO_SERVER]);
        if let Some(count) = no_auth_actions {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", count.to_string());
        }
        if let Some(concurrency) = lambda_concurrency {
            command.env(
                "REMEDIOS_LAMBDA_CONCURRENT_EXECUTIONS",
                concurrency.to_string(),
            );
        }
        let child = command
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
            principals: Vec::new(),
            keys: BTreeMap::new(),
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

    /// An SDK configuration that talks to this emulator: as the admin when IAM is
    /// enforced, else with dummy credentials.
    pub async fn sdk_config(&self) -> SdkConfig {
        match self.keys.get(iam::ADMIN) {
            Some(key) => sdk_config_with(&self.endpoint, key).await,
            None => sdk_config_for(&self.endpoint).await,
        }
    }

    /// An SDK configuration signed as `principal` (one of [`Moto::start_enforcing`]'s).
    /// On a moto without IAM ([`Moto::start`]) every principal is the same dummy one.
    pub async fn sdk_config_as(&self, principal: &str) -> Result<SdkConfig, MotoError> {
        if self.keys.is_empty() {
            return Ok(sdk_config_for(&self.endpoint).await);
        }
        let key = self.access_key(principal)?;
        Ok(sdk_config_with(&self.endpoint, key).await)
    }

    /// The access key of `principal`, for a process that reads it from its environment.
    pub fn access_key(&self, principal: &str) -> Result<&AccessKey, MotoError> {
        self.keys.get(principal).ok_or_else(|| {
            MotoError::Setup(format!(
                "no principal {principal} on this moto (IAM enforced: {})",
                !self.keys.is_empty()
            ))
        })
    }

    /// Stops the emulator (as in an outage); `restart` brings it back, empty.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts moto again on the same port (its state starts empty). With IAM enforced
    /// the principals come back with new keys, so clients built before the restart are
    /// refused: an outage test that keeps its clients runs on a moto without IAM.
    pub async fn restart(&mut self) -> Result<(), MotoError> {
        self.stop().await;
        let fresh = if self.keys.is_empty() {
            Moto::start_on(self.port).await?
        } else {
            Moto::start_enforcing_on(self.port, self.principals.clone()).await?
        };
        *self = fresh;
        Ok(())
    }
}

/// An S3 client for the emulator behind `sdk`: the functions' own client
/// ([`remedios_shared::aws::s3`]) with the path-style addressing moto needs.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    remedios_shared::aws::s3(
        sdk,
        &remedios_shared::config::AwsSettings {
            s3_force_path_style: true,
        },
    )
}

/// An SDK configuration for an emulator at `endpoint`, with dummy credentials.
pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
    let dummy = AccessKey {
        id: "test".into(),
        secret: "test".into(),
    };
    sdk_config_with(endpoint, &dummy).await
}

/// An SDK configuration for an emulator at `endpoint`, signed with `key`.
pub async fn sdk_config_with(endpoint: &str, key: &AccessKey) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(iam::REGION))
        .credentials_provider(Credentials::new(
            key.id.clone(),
            key.secret.clone(),
            None,
            None,
            "remedios-emulators",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// A FIFO queue and its dead-letter queue, as created on the emulator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueuePair {
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
    pub dlq_arn: String,
}

/// Creates a FIFO queue with its FIFO dead-letter queue and redrive policy.
pub async fn create_queue_pair(
    sqs: &aws_sdk_sqs::Client,
    spec: &QueueSpec,
) -> Result<QueuePair, MotoError> {
    create_queues(sqs, &QueueDefinition::from(spec.clone())).await
}

/// Creates a queue with its dead-letter queue and redrive policy, as `definition` says.
pub async fn create_queues(
    sqs: &aws_sdk_sqs::Client,
    definition: &QueueDefinition,
) -> Result<QueuePair, MotoError> {
    let setup = |e: &dyn std::fmt::Display| MotoError::Setup(e.to_string());
    let secs = |d: Duration| d.as_secs().to_string();
    let mut dlq = sqs
        .create_queue()
        .queue_name(definition.dead_letter_queue_name())
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            secs(definition.dead_letter_retention),
        );
    if definition.fifo {
        dlq = dlq.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let dlq_url = dlq
        .send()
        .await
        .map_err(|e| setup(&aws_sdk_sqs::error::DisplayErrorContext(e)))?
        .queue_url
        .unwrap_or_default();
    let dlq_arn = queue_arn(sqs, &dlq_url).await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": definition.spec.max_receive_count,
    })
    .to_string();
    let mut queue = sqs
        .create_queue()
        .queue_name(definition.queue_name())
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            secs(definition.spec.visibility_timeout),
        )
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            secs(definition.message_retention),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive);
    if definition.fifo {
        queue = queue
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(
                QueueAttributeName::ContentBasedDeduplication,
                definition.content_based_deduplication.to_string(),
            );
    }
    let url = queue
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

/// Creates the bucket `name` with the template's settings ([`BucketSettings`]):
/// default encryption, the public access block, versioning and the lifecycle rules.
/// The TLS-only bucket policy is left out: the emulator speaks plain HTTP.
pub async fn create_configured_bucket(
    s3: &aws_sdk_s3::Client,
    name: &str,
    settings: &BucketSettings,
) -> Result<(), MotoError> {
    use aws_sdk_s3::types::{
        AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketVersioningStatus,
        ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
        PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
        ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
    };
    let setup = |e: &dyn std::fmt::Display| MotoError::Setup(format!("bucket {name}: {e}"));
    fn sdk<E: std::error::Error>(name: &str, e: E) -> MotoError {
        MotoError::Setup(format!(
            "bucket {name}: {}",
            aws_sdk_s3::error::DisplayErrorContext(e)
        ))
    }
    create_bucket(s3, name).await?;
    if let Some(algorithm) = &settings.encryption {
        let by_default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::from(algorithm.as_str()))
            .build()
            .map_err(|e| setup(&e))?;
        let configuration = ServerSideEncryptionConfiguration::builder()
            .rules(
                ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(by_default)
                    .build(),
            )
            .build()
            .map_err(|e| setup(&e))?;
        s3.put_bucket_encryption()
            .bucket(name)
            .server_side_encryption_configuration(configuration)
            .send()
            .await
            .map_err(|e| sdk(name, e))?;
    }
    if settings.public_access_blocked {
        s3.put_public_access_block()
            .bucket(name)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .block_public_policy(true)
                    .ignore_public_acls(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk(name, e))?;
    }
    if settings.versioned {
        s3.put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk(name, e))?;
    }
    if !settings.lifecycle.is_empty() {
        let mut configuration = BucketLifecycleConfiguration::builder();
        for rule in &settings.lifecycle {
            let mut builder = LifecycleRule::builder()
                .id(&rule.id)
                .status(ExpirationStatus::Enabled)
                .filter(
                    LifecycleRuleFilter::builder()
                        .prefix(rule.prefix.clone().unwrap_or_default())
                        .build(),
                );
            if let Some(days) = rule.expiration_days {
                builder = builder.expiration(
                    LifecycleExpiration::builder()
                        .days(i32::try_from(days).unwrap_or(i32::MAX))
                        .build(),
                );
            }
            if let Some(days) = rule.abort_incomplete_upload_days {
                builder = builder.abort_incomplete_multipart_upload(
                    AbortIncompleteMultipartUpload::builder()
                        .days_after_initiation(i32::try_from(days).unwrap_or(i32::MAX))
                        .build(),
                );
            }
            configuration = configuration.rules(builder.build().map_err(|e| setup(&e))?);
        }
        s3.put_bucket_lifecycle_configuration()
            .bucket(name)
            .lifecycle_configuration(configuration.build().map_err(|e| setup(&e))?)
            .send()
            .await
            .map_err(|e| sdk(name, e))?;
    }
    Ok(())
}

/// A message as SQS handed it over, with the system attributes the tools look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    pub body: String,
    /// `MessageGroupId` (FIFO queues).
    pub group_id: Option<String>,
    /// `MessageDeduplicationId` (FIFO queues).
    pub dedup_id: Option<String>,
    /// `SentTimestamp`: when the queue accepted it (Unix ms).
    pub sent_at_ms: Option<u64>,
    /// `ApproximateReceiveCount`, this receive included.
    pub receive_count: u32,
}

impl Received {
    /// From a `ReceiveMessage` answer that asked for the system attributes.
    pub fn of(message: &aws_sdk_sqs::types::Message) -> Self {
        use aws_sdk_sqs::types::MessageSystemAttributeName as Attr;
        let attribute = |name: Attr| message.attributes.as_ref()?.get(&name).cloned();
        Received {
            message_id: message.message_id.clone().unwrap_or_default(),
            body: message.body.clone().unwrap_or_default(),
            group_id: attribute(Attr::MessageGroupId),
            dedup_id: attribute(Attr::MessageDeduplicationId),
            sent_at_ms: attribute(Attr::SentTimestamp).and_then(|v| v.parse().ok()),
            receive_count: attribute(Attr::ApproximateReceiveCount)
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
        }
    }
}

/// Receives and deletes every visible message of `url`, in order, until a receive that
/// waited `wait_seconds` (long poll, 0 for none) comes back empty.
pub async fn drain(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    wait_seconds: i32,
) -> Result<Vec<Received>, MotoError> {
    use aws_sdk_sqs::types::MessageSystemAttributeName as Attr;
    let failed = |what: &str, e: &dyn std::error::Error| {
        MotoError::Setup(format!(
            "{what} {url}: {}",
            aws_sdk_sqs::error::DisplayErrorContext(e)
        ))
    };
    let mut drained = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(Attr::All)
            .send()
            .await
            .map_err(|e| failed("receive from", &e))?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(drained);
        }
        for m in messages {
            drained.push(Received::of(&m));
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle.unwrap_or_default())
                .send()
                .await
                .map_err(|e| failed("delete from", &e))?;
        }
    }
}
